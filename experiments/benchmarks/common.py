"""Shared pieces of the step benchmarks: peak FLOP/s, analytic FLOPs, interleaved timing.

Speed figures on a shared machine are only meaningful as ratios measured in one process,
on the same batch, with the implementations taking turns (`interleaved`), so that load from
other work hits every implementation alike. `machine_load()` records how loaded the box
was, to print next to the figures.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from biobert_jax.config import BertConfig

# Dense bf16 peak FLOP/s per chip (vendor figures, no sparsity).
PEAK_FLOPS = {
    "H100": 989e12, "H200": 989e12, "H800": 989e12, "GH200": 989e12, "B200": 2250e12,
    "A100": 312e12, "A800": 312e12, "L4": 121e12, "V100": 125e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
    "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12,
}


def chip_peak(device: jax.Device) -> float | None:
  """The chip's dense bf16 peak FLOP/s by device_kind, None when unknown (or a CPU)."""
  kind = device.device_kind
  if "H100" in kind and "PCIe" in kind:
    return 756e12
  for name, peak in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])):
    if name.lower() in kind.lower():
      return peak
  return None


def measured_matmul_peak(n: int = 2048, repeats: int = 5, dtype: Any = jnp.float32) -> float:
  """FLOP/s of a large square matmul on the default device (best of `repeats`).

  On a CPU this is the 'peak' MFU is measured against; measure it in the same process as
  the steps, so that it sees the same machine load.
  """
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n ** 3 / min(times)


def peak_flops(device: jax.Device | None = None) -> tuple[float | None, str]:
  """(peak FLOP/s, what it is): the measured f32 matmul on CPU, the chip's bf16 peak else."""
  device = device or jax.devices()[0]
  if device.platform == "cpu":
    return measured_matmul_peak(), "measured 2048^2 f32 matmul"
  return chip_peak(device), f"{device.device_kind} dense bf16 peak"


def encoder_forward_flops(c: BertConfig, batch: int, seq: int) -> float:
  """Forward matmul FLOPs of the encoder layers (dense layers + attention scores/context)."""
  h, i, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
  per_token = layers * (2 * 4 * h * h + 2 * 2 * h * i + 2 * 2 * seq * h)
  return float(batch * seq * per_token)


def pretraining_flops_per_step(c: BertConfig, batch: int, seq: int, preds: int) -> float:
  """Training FLOPs (3x forward) of one pre-training step, counting matmuls only.

  The MLM projection counts the P gathered positions only, as original BERT computes it.
  """
  h = c.hidden_size
  forward = encoder_forward_flops(c, batch, seq)
  forward += batch * preds * (2 * h * h + 2 * h * c.vocab_size)  # MLM transform + projection
  forward += batch * (2 * h * h + 2 * h * 2)  # pooler + NSP
  return 3.0 * forward


def finetune_flops_per_step(c: BertConfig, batch: int, seq: int, num_labels: int) -> float:
  """Training FLOPs (3x forward) of one token-classification step, matmuls only."""
  forward = encoder_forward_flops(c, batch, seq) + batch * seq * 2 * c.hidden_size * num_labels
  return 3.0 * forward


def interleaved(runners: dict[str, Callable[[int], float]], rounds: int,
                steps: int) -> dict[str, list[float]]:
  """Seconds per step of each runner, `rounds` times, the runners taking turns.

  Each runner is `run(n) -> seconds per step over n steps` (it blocks until done and keeps
  its own state). Warm-up/compilation is the caller's job.
  """
  times: dict[str, list[float]] = {name: [] for name in runners}
  for _ in range(rounds):
    for name, run in runners.items():
      times[name].append(run(steps))
  return times


def median(xs: list[float]) -> float:
  return statistics.median(xs)


def machine_load() -> str:
  """`uptime`-style 1/5/15-minute load averages and the CPU count, for the report."""
  one, five, fifteen = os.getloadavg()
  return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def fmt_mfu(mfu: float | None) -> str:
  return f"{100 * mfu:.1f}%" if mfu is not None else "n/a"
