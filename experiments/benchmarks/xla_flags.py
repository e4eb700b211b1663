r"""XLA CPU compiler options on the fine-tuning step and forward, in one process, beside torch.

  python -m experiments.benchmarks.xla_flags --seq_lens=32,128 --rounds=3 \
      --variants='default;xla_cpu_experimental_ynn_fusion_type='
"""
from __future__ import annotations

import json
import time
from typing import Any
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from biobert_jax import checkpoints, models
from biobert_jax.runtime import ahead, host_memory
from experiments.benchmarks import common
from experiments.benchmarks import finetune_step as ft

# --seq_lens, --batch_size, --steps, --rounds, --peer, --output, --checkpoint: finetune_step's
# flags.
_KINDS = flags.DEFINE_list(
    "kinds", ["step", "forward"],
    "What to time: the train step, the eval forward, or both (the step at long lengths "
    "takes ~15-30 s a call on 2 cores).")
_VARIANTS = flags.DEFINE_string(
    "variants", "default;xla_cpu_experimental_ynn_fusion_type=",
    "';'-separated variants, each ','-separated key=value XLA options; 'default' = none.")


def parse_variant(text: str) -> dict[str, Any]:
  """'a=true,b=3' -> {'a': True, 'b': 3}; 'default' -> {}."""
  text = text.strip()
  if text in ("", "default"):
    return {}
  options: dict[str, Any] = {}
  for item in text.split(","):
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"--variants: {item!r} is not key=value")
    low = value.strip().lower()
    if low in ("true", "false"):
      options[key.strip()] = low == "true"
    elif low.lstrip("-").isdigit():
      options[key.strip()] = int(low)
    else:
      options[key.strip()] = value.strip()
  return options


def compiled_variants(jitted: Any, args: tuple,
                      variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """{variant: the jitted function lowered once and compiled with that variant's options}."""
  lowered = jitted.lower(*args)
  out = {}
  for name, options in variants.items():
    t = time.perf_counter()
    out[name] = lowered.compile(compiler_options=options or None)
    print(f"  compiled {name} in {time.perf_counter() - t:.1f} s", flush=True)
  return out


def step_variants(config: Any, pretrained: Any, num_labels: int, batch: dict[str, Any],
                  variants: dict[str, dict[str, Any]]) -> tuple[dict, dict]:
  """({variant: the trainer's step built with that variant's options, compiled for
  `batch`'s shape}, {variant: its own fresh state})."""
  steps, states = {}, {}
  for name, options in variants.items():
    steps[name], states[name] = common.finetune_step(config, pretrained, num_labels,
                                                     jnp.float32,
                                                     compiler_options=options or None)
    t = time.perf_counter()
    steps[name].compile_ahead((ahead.abstract(states[name]),), [ahead.abstract(batch)], 1)
    steps[name].wait()
    print(f"  compiled step {name} in {time.perf_counter() - t:.1f} s", flush=True)
  return steps, states


def theirs_forward(path: str, num_labels: int) -> Callable[[dict, int], float] | None:
  """run(batch, n) -> seconds per eval forward of transformers' BertForTokenClassification
  (eval mode, no_grad, its default attention: SDPA)."""
  # The peer is optional (heavy): without torch/transformers only ours is timed.
  try:
    import torch
    import transformers
  except ImportError:
    return None
  model = transformers.BertForTokenClassification.from_pretrained(path, num_labels=num_labels)
  model.eval()
  tensors: dict[int, dict[str, Any]] = {}

  def run(batch: dict[str, np.ndarray], n: int) -> float:
    if id(batch) not in tensors:
      tensors.clear()
      tensors[id(batch)] = {k: torch.from_numpy(batch[k].astype(np.int64))
                            for k in ("input_ids", "token_type_ids", "attention_mask")}
    b = tensors[id(batch)]
    t = time.perf_counter()
    with torch.no_grad():
      for _ in range(n):
        model(**b)
    return (time.perf_counter() - t) / n

  return run


def bench(path: str, seq: int, variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
  config, pretrained = checkpoints.load(path)
  num_labels = 3
  np_batch = common.finetune_batch(config, ft._BATCH.value, seq, num_labels)
  batch = jax.device_put(np_batch)
  module = models.BertForTokenClassification(config, num_labels=num_labels)

  def forward(params, b):
    return module.apply({"params": params}, b["input_ids"], b["token_type_ids"],
                        b["attention_mask"], deterministic=True)

  kinds = set(_KINDS.value)
  # The forward's own params: the steps donate (overwrite) their states' buffers.
  params = common.finetune_step(config, pretrained, num_labels, jnp.float32)[1]["params"]
  steps, states = (step_variants(config, pretrained, num_labels, np_batch, variants)
                   if "step" in kinds else ({}, {}))
  fwds = (compiled_variants(jax.jit(forward), (params, batch), variants)
          if "forward" in kinds else {})
  reference = np.asarray(fwds["default"](params, batch)) if "default" in fwds else None

  runners: dict[str, Callable[[int], float]] = {}
  for name in variants:
    def run_step(n, name=name):
      t = time.perf_counter()
      s = states[name]
      for _ in range(n):
        s, metrics = steps[name](s, batch)
      jax.block_until_ready((s, metrics))
      states[name] = s
      return (time.perf_counter() - t) / n

    def run_fwd(n, name=name):
      t = time.perf_counter()
      for _ in range(n):
        out = fwds[name](params, batch)
      jax.block_until_ready(out)
      return (time.perf_counter() - t) / n
    if "step" in kinds:
      runners[f"step/{name}"] = run_step
    if "forward" in kinds:
      runners[f"forward/{name}"] = run_fwd
  if ft._PEER.value:
    np_batch = common.finetune_batch(config, ft._BATCH.value, seq, num_labels)
    peer = ft.theirs(path, num_labels, "float32") if "step" in kinds else None
    if peer is not None:
      runners["step/transformers_torch"] = lambda n: peer(np_batch, n)
    peer_forward = theirs_forward(path, num_labels) if "forward" in kinds else None
    if peer_forward is not None:
      runners["forward/transformers_torch"] = lambda n: peer_forward(np_batch, n)
  for run in runners.values():
    run(1)
  times = common.interleaved(runners, ft._ROUNDS.value, ft._STEPS.value)
  rows = []
  for key, ts in times.items():
    kind, name = key.split("/", 1)
    row = {"kind": kind, "variant": name, "options": variants.get(name, {}), "seq_len": seq,
           "batch_size": ft._BATCH.value, "ms": 1e3 * common.median(ts),
           "s_rounds": ts, "load": common.machine_load()}
    if kind == "forward" and reference is not None and name in fwds:
      row["max_abs_diff_vs_default"] = float(np.max(np.abs(
          np.asarray(fwds[name](params, batch)) - reference)))
    rows.append(row)
  base = {r["kind"]: r["ms"] for r in rows if r["variant"] == "default"}
  peer_ms = {r["kind"]: r["ms"] for r in rows if r["variant"] == "transformers_torch"}
  for row in rows:
    if row["kind"] in base:
      row["speedup_vs_default"] = base[row["kind"]] / row["ms"]
    if row["kind"] in peer_ms:
      row["speedup_vs_torch"] = peer_ms[row["kind"]] / row["ms"]
  return rows


def main(argv):
  del argv
  # As the mains run. Without it every call re-faults its temp buffer, and variants with
  # bigger buffers lose more: without it Eigen's dots once looked 1.69x faster than
  # YNNPACK's here at L=384, yet were slower in the trainer, which keeps the buffers.
  host_memory.keep_host_buffers()
  variants = {v.strip() or "default": parse_variant(v) for v in _VARIANTS.value.split(";")}
  path = ft._CHECKPOINT.value or ft.default_checkpoint()
  print(f"{common.machine_load()}; jax {jax.__version__}", flush=True)
  all_rows = []
  for seq in map(int, ft._SEQ_LENS.value):
    rows = bench(path, seq, variants)
    for r in rows:
      extra = (f" diff {r['max_abs_diff_vs_default']:.1e}"
               if "max_abs_diff_vs_default" in r else "")
      speed = f" {r['speedup_vs_default']:.2f}x default" if "speedup_vs_default" in r else ""
      speed += f" {r['speedup_vs_torch']:.2f}x torch" if "speedup_vs_torch" in r else ""
      print(f"L={seq:<4d} {r['kind']:8s} {r['variant']:60s} {r['ms']:9.1f} ms{speed}{extra}",
            flush=True)
    all_rows += rows
  if ft._OUTPUT.value:
    with open(ft._OUTPUT.value, "a", encoding="utf-8") as f:
      for row in all_rows:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  app.run(main)
