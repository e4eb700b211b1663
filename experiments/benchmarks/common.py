"""Shared pieces of the step benchmarks: peak FLOP/s, analytic FLOPs, interleaved timing."""
from __future__ import annotations

import os
import statistics
import time
from typing import Any
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from biobert_jax import models, sharding
from biobert_jax.checkpoints import surgery
from biobert_jax.config import BertConfig
from biobert_jax.configs.optim import bert_spec
from biobert_jax.train import optim, state as state_lib
from biobert_jax.train import step as step_lib

# The fine-tuning optimiser of both sides of finetune_step (BERT's AdamW, clipping at 1.0).
FINETUNE_OPT = bert_spec(learning_rate=5e-5, warmup_steps=10, total_steps=1000)

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


def encoder_dense_flops_per_token(c: BertConfig) -> float:
  """Forward FLOPs of the encoder's dense layers for one token (Q, K, V, output, FFN): the
  work every real token costs whatever the batching, padding or sequence length."""
  h, i = c.hidden_size, c.intermediate_size
  return float(c.num_hidden_layers * (2 * 4 * h * h + 2 * 2 * h * i))


def encoder_forward_flops(c: BertConfig, batch: int, seq: int) -> float:
  """Forward matmul FLOPs of the encoder layers (dense layers + attention scores/context)."""
  attention = c.num_hidden_layers * 2 * 2 * seq * c.hidden_size
  return float(batch * seq * (encoder_dense_flops_per_token(c) + attention))


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


def synthetic_pretraining_batch(batch: int, seq: int, preds: int, vocab_size: int,
                                seed: int = 0) -> dict[str, np.ndarray]:
  """A pre-training batch with BERT's feature names, every position real.

  Self-contained (numpy only), so it also runs where the data pipeline's dependencies
  (TensorFlow, ml_collections) are not installed, e.g. on the GPU machine.
  """
  rng = np.random.default_rng(seed)
  positions = np.sort(np.stack([rng.choice(np.arange(1, seq), preds, replace=False)
                                for _ in range(batch)]), axis=1).astype(np.int32)
  return {
      "input_ids": rng.integers(1000, vocab_size, (batch, seq), dtype=np.int32),
      "input_mask": np.ones((batch, seq), np.int32),
      "segment_ids": (np.arange(seq)[None, :] >= seq // 2).repeat(batch, 0).astype(np.int32),
      "masked_lm_positions": positions,
      "masked_lm_ids": rng.integers(1000, vocab_size, (batch, preds), dtype=np.int32),
      "masked_lm_weights": np.ones((batch, preds), np.float32),
      "next_sentence_labels": rng.integers(0, 2, (batch,), dtype=np.int32),
  }


def time_steps(step: Callable, state: Any, batch: Any, n: int) -> tuple[float, Any]:
  """Seconds per step over n steps of `state, out = step(state, batch)`, and the new state."""
  t = time.perf_counter()
  out = None
  for _ in range(n):
    state, out = step(state, batch)
  jax.block_until_ready((state, out))
  return (time.perf_counter() - t) / n, state


def finetune_batch(c: BertConfig, batch: int, seq: int, num_labels: int) -> dict[str, np.ndarray]:
  """Random ids with every position real: mask all ones, every label counted."""
  rng = np.random.default_rng(seq)
  ids = rng.integers(1000, c.vocab_size, (batch, seq), dtype=np.int32)
  return {"input_ids": ids, "token_type_ids": np.zeros_like(ids),
          "attention_mask": np.ones_like(ids),
          "labels": rng.integers(0, num_labels, (batch, seq), dtype=np.int32)}


def token_classification_loss(module: Any) -> Callable:
  """loss_fn(params, batch, dropout_rng) -> (loss, {}) of a token classifier: the mean
  token cross-entropy, i.e. the NER adapter's masked_cross_entropy with every label
  counted. Written with optax here so that this module imports where the tasks'
  dependencies (ml_collections, TensorFlow) are not installed, e.g. the GPU image."""
  def loss_fn(params, batch, rng):
    logits = module.apply({"params": params}, input_ids=batch["input_ids"],
                          token_type_ids=batch["token_type_ids"],
                          attention_mask=batch["attention_mask"], deterministic=False,
                          rngs={"dropout": rng})
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), batch["labels"])), {}
  return loss_fn


def finetune_step(config: BertConfig, pretrained: Any, num_labels: int, dtype: Any, *,
                  compiler_options: dict[str, Any] | None = None,
                  split: bool = True) -> tuple[Callable, dict]:
  """(step, state): the fine-tuning trainer's step (train.step.make_finetune_step, what
  trainers/finetune runs) on a token classifier, on one device; `pretrained` None =
  random init. step(state, batch) -> (state, metrics); the first call of a batch shape
  compiles it (or call `step.compile_ahead` first)."""
  module = models.BertForTokenClassification(config, num_labels=num_labels, dtype=dtype)
  params = models.init_params(module, jax.random.key(0))
  if pretrained is not None:
    params, _ = surgery.graft_encoder(params, pretrained)
  tx, schedule = optim.make_optimizer(FINETUNE_OPT)
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  state, shardings = state_lib.state_from_params(
      jax.device_get(params), models.logical_axes(module), tx, mesh, seed=1)
  step = step_lib.make_finetune_step(token_classification_loss(module), tx, schedule,
                                     shardings, mesh, compiler_options=compiler_options,
                                     split=split)
  return step, state
