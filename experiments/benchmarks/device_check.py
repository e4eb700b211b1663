r"""One accelerator check (parity, pre-training/fine-tuning steps, predict, annotate), run
through device_check.sh; `--small` runs every section at toy sizes on a CPU.
"""
from __future__ import annotations

import collections
import json
import os
import pathlib
import platform
import re
import sys
import tempfile
import time
import traceback
from typing import Any
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from biobert_jax import checkpoints, models
from biobert_jax.config import BertConfig
from biobert_jax.configs.optim import bert_spec
from biobert_jax.train import optim
from biobert_jax.train import step as step_lib
from experiments.benchmarks import common

_OUT = flags.DEFINE_string("out", "device_check_out/device_check.json", "JSON output file.")
_SMALL = flags.DEFINE_bool("small", False, "Toy sizes (CPU dry run of every section).")
_BUDGET = flags.DEFINE_float("budget_s", 270.0, "Skip the remaining sections after this.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per measurement.")
_SCAN = flags.DEFINE_bool("scan_layers", False, "Pre-train with scanned layers (compiles "
                           "faster; the default trainer config unrolls).")
_SECTIONS = flags.DEFINE_list("sections", ["parity", "pretrain", "finetune", "predict",
                                           "annotate"],
                              "Sections to run, in order.")

T0 = time.perf_counter()


def sizes() -> dict[str, Any]:
  """Model preset and (length, batch) grid; tokens per step kept near 16k on the chip."""
  if _SMALL.value:
    return {"preset": "tiny", "pretrain": [(32, 4), (64, 2)], "finetune": [(32, 4)],
            "predict": [(32, 8)], "dtypes": ["float32", "bfloat16"],
            "annotate": {"docs": 24, "batch": 16, "hf_batches": ["8"]}}
  # Most important first (the budget skips the tail): the target is base at 512, bf16.
  return {"preset": "base", "pretrain": [(512, 32), (128, 128)], "finetune": [(128, 32)],
          "predict": [(128, 256)], "dtypes": ["bfloat16", "float32"],
          "annotate": {"docs": 2000, "batch": 256, "hf_batches": ["1", "64"]}}


def peak() -> tuple[float | None, str]:
  device = jax.devices()[0]
  if device.platform == "cpu":
    return common.measured_matmul_peak(n=512 if _SMALL.value else 2048), "measured f32 matmul"
  return common.chip_peak(device), f"{device.device_kind} dense bf16 peak"


def environment() -> dict[str, Any]:
  device = jax.devices()[0]
  info = {"python": sys.version.split()[0], "machine": platform.machine(),
          "jax": jax.__version__, "backend": jax.default_backend(),
          "device_kind": device.device_kind, "device_count": jax.device_count(),
          "small": _SMALL.value, "load": common.machine_load()}
  for name in ("flax", "optax", "torch", "transformers"):
    try:
      info[name] = __import__(name).__version__
    except Exception as e:
      info[name] = f"unavailable: {e}"
  return info


def parity() -> dict[str, Any]:
  """Our encoder on the accelerator vs transformers' BertModel (torch, CPU), same weights."""
  # Heavy and only needed here and in the annotate section (see annotate_throughput).
  import torch
  import transformers

  c = BertConfig.preset(sizes()["preset"])
  hf_config = transformers.BertConfig(**{k: v for k, v in c.to_dict().items()
                                         if k in transformers.BertConfig().to_dict()})
  torch.manual_seed(0)
  ref = transformers.BertModel(hf_config).eval()
  rng = np.random.default_rng(0)
  batch, seq = 4, 128 if not _SMALL.value else 32
  ids = rng.integers(1000, c.vocab_size, (batch, seq))
  types = (np.arange(seq)[None] >= seq // 2).repeat(batch, 0)
  mask = np.ones((batch, seq), np.int64)
  mask[1, seq // 2:] = 0  # one padded row
  with torch.no_grad():
    out = ref(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types.astype(
        np.int64)), attention_mask=torch.from_numpy(mask))
  want_seq, want_pool = out.last_hidden_state.numpy(), out.pooler_output.numpy()
  with tempfile.TemporaryDirectory() as d:
    ref.save_pretrained(d, safe_serialization=True)
    config, params = checkpoints.load(d)
  encoder = models.BertEncoder(config)
  with jax.default_matmul_precision("highest"):
    got_seq, got_pool = jax.jit(lambda p, i, t, m: encoder.apply({"params": p["encoder"]
                                                                  if "encoder" in p else p},
                                                                 i, t, m))(
        params, jnp.asarray(ids, jnp.int32), jnp.asarray(types, jnp.int32),
        jnp.asarray(mask, jnp.int32))
  real = mask.astype(bool)
  d_seq = float(np.abs(np.asarray(got_seq) - want_seq)[real].max())
  d_pool = float(np.abs(np.asarray(got_pool) - want_pool).max())
  return {"preset": sizes()["preset"], "batch": batch, "seq_len": seq,
          "max_abs_diff_sequence": d_seq, "max_abs_diff_pooled": d_pool,
          "ok": d_seq < 1e-4 and d_pool < 1e-4}


def _measure(step: Callable, state: Any, batch: Any) -> tuple[float, float]:
  """(compile + first step seconds, seconds per step over --steps after one warm-up)."""
  t = time.perf_counter()
  _, state = common.time_steps(step, state, batch, 1)
  compile_s = time.perf_counter() - t
  _, state = common.time_steps(step, state, batch, 1)
  per_step, _ = common.time_steps(step, state, batch, _STEPS.value)
  return compile_s, per_step


def pretrain() -> list[dict[str, Any]]:
  chip_peak, peak_what = peak()
  rows = []
  tx, schedule = optim.make_optimizer(
      bert_spec(learning_rate=1e-4, warmup_steps=10, total_steps=1000))
  for seq, batch_size in sizes()["pretrain"]:
    c = BertConfig.preset(sizes()["preset"], max_position_embeddings=max(512, seq))
    preds = max(1, round(seq * 0.15))
    batch = jax.device_put(common.synthetic_pretraining_batch(batch_size, seq, preds,
                                                              c.vocab_size))
    flops = common.pretraining_flops_per_step(c, batch_size, seq, preds)
    for dtype_name in sizes()["dtypes"]:
      if _over_budget():
        rows.append({"seq_len": seq, "dtype": dtype_name, "skipped": "budget"})
        continue
      model = models.BertForPreTraining(c, dtype=models.compute_dtype(dtype_name),
                                        scan_layers=_SCAN.value)
      params = models.init_params(model, jax.random.key(0))
      state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0),
               "rng": jax.random.PRNGKey(1)}
      step = jax.jit(step_lib.make_train_step(model, tx, schedule), donate_argnums=0)
      compile_s, t = _measure(step, state, batch)
      rows.append({"preset": sizes()["preset"],
                   "seq_len": seq, "batch_size": batch_size, "dtype": dtype_name,
                   "compile_s": compile_s, "step_ms": 1e3 * t,
                   "tokens_per_sec": batch_size * seq / t,
                   "model_tflops_per_sec": flops / t / 1e12,
                   "mfu": flops / t / chip_peak if chip_peak else None, "peak": peak_what})
      _log(rows[-1])
      del state, step
  return rows


def finetune() -> list[dict[str, Any]]:
  chip_peak, peak_what = peak()
  rows = []
  for seq, batch_size in sizes()["finetune"]:
    c = BertConfig.preset(sizes()["preset"], max_position_embeddings=max(512, seq))
    batch = jax.device_put(common.finetune_batch(c, batch_size, seq, 3))
    flops = common.finetune_flops_per_step(c, batch_size, seq, 3)
    for dtype_name in sizes()["dtypes"]:
      if _over_budget():
        rows.append({"seq_len": seq, "dtype": dtype_name, "skipped": "budget"})
        continue
      step, state = common.finetune_step(c, None, 3, models.compute_dtype(dtype_name))
      compile_s, t = _measure(step, state, batch)
      rows.append({"preset": sizes()["preset"], "seq_len": seq, "batch_size": batch_size,
                   "dtype": dtype_name, "compile_s": compile_s, "step_ms": 1e3 * t,
                   "examples_per_sec": batch_size / t,
                   "model_tflops_per_sec": flops / t / 1e12,
                   "mfu": flops / t / chip_peak if chip_peak else None, "peak": peak_what})
      _log(rows[-1])
      del state, step
  return rows


def predict() -> list[dict[str, Any]]:
  rows = []
  for seq, batch_size in sizes()["predict"]:
    c = BertConfig.preset(sizes()["preset"], max_position_embeddings=max(512, seq))
    np_batch = common.finetune_batch(c, batch_size, seq, 3)
    inputs = [jax.device_put(np_batch[k]) for k in ("input_ids", "token_type_ids",
                                                     "attention_mask")]
    for dtype_name in sizes()["dtypes"]:
      if _over_budget():
        rows.append({"seq_len": seq, "dtype": dtype_name, "skipped": "budget"})
        continue
      module = models.BertForTokenClassification(c, num_labels=3,
                                                 dtype=models.compute_dtype(dtype_name))
      params = models.init_params(module, jax.random.key(0))
      fwd = jax.jit(lambda p, i, t, m, module=module: jax.nn.softmax(
          module.apply({"params": p}, i, t, m, deterministic=True), axis=-1))
      t0 = time.perf_counter()
      fwd(params, *inputs).block_until_ready()
      compile_s = time.perf_counter() - t0
      fwd(params, *inputs).block_until_ready()
      t0 = time.perf_counter()
      for _ in range(_STEPS.value):
        out = fwd(params, *inputs)
      out.block_until_ready()
      t = (time.perf_counter() - t0) / _STEPS.value
      rows.append({"preset": sizes()["preset"], "seq_len": seq, "batch_size": batch_size,
                   "dtype": dtype_name, "compile_s": compile_s, "batch_ms": 1e3 * t,
                   "sequences_per_sec": batch_size / t, "tokens_per_sec": batch_size * seq / t})
      _log(rows[-1])
  return rows


def _annotate_inputs(work: str) -> tuple[str, list[str]]:
  """(vocab.txt, texts) from the sentence fixture, which the device machine has.

  The vocabulary holds BERT's special tokens, every character (alone and as "##c") and
  the 3,000 most frequent lower-cased words, so WordPiece splits like a real vocab.
  """
  path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "testdata",
                      "pt_sentences.txt")
  abstracts, current = [], []
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if line.startswith("#") or not line:
        if current:
          abstracts.append(" ".join(current))
        current = []
      else:
        current.append(line)
  if current:
    abstracts.append(" ".join(current))
  text = " ".join(abstracts).lower()
  words = collections.Counter(re.findall(r"\w+", text))
  chars = sorted(set(text) - set(" \t\n"))
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
  vocab += [w for w, _ in words.most_common(3000) if w not in set(vocab)]
  vocab_path = os.path.join(work, "vocab.txt")
  with open(vocab_path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")
  n = sizes()["annotate"]["docs"]
  return vocab_path, [abstracts[i % len(abstracts)] for i in range(n)]


def annotate_throughput() -> dict[str, Any]:
  """Documents/s of our annotate command vs transformers' pipeline, same model and texts."""
  # torch (and the annotate benchmark, which imports it) only in the sections that use
  # them: a section that cannot import them records the error, the others still run.
  import torch

  from experiments.benchmarks import annotate as annotate_bench

  setting = sizes()["annotate"]
  with tempfile.TemporaryDirectory() as work:
    vocab_path, texts = _annotate_inputs(work)
    with open(vocab_path, encoding="utf-8") as f:
      vocab_size = sum(1 for _ in f)
    c = BertConfig.preset(sizes()["preset"], vocab_size=vocab_size)
    encoder = models.init_params(models.BertForTokenClassification(c, num_labels=3),
                                 jax.random.key(0))["encoder"]
    ours, hf = annotate_bench.build_models(pathlib.Path(work), c, jax.device_get(encoder),
                                           vocab_path, True)
    rows = {}
    for dtype_name in sizes()["dtypes"]:
      if _over_budget():
        rows[dtype_name] = {"skipped": "budget"}
        continue
      hf_device = 0 if torch.cuda.is_available() else -1
      rows[dtype_name] = annotate_bench.compare(
          pathlib.Path(tempfile.mkdtemp(dir=work)), ours, hf, texts, rounds=1,
          hf_batch_sizes=setting["hf_batches"], batch_size=setting["batch"],
          bucket_length=32, dtype=dtype_name, hf_device=hf_device)
      rows[dtype_name]["preset"] = sizes()["preset"]
      _log(rows[dtype_name])
  return rows


def _over_budget() -> bool:
  return time.perf_counter() - T0 > _BUDGET.value


def _log(row: Any) -> None:
  print(json.dumps(row), flush=True)


def _write(result: dict[str, Any]) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  tmp = _OUT.value + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, _OUT.value)


def main(argv):
  del argv
  sections = {"parity": parity, "pretrain": pretrain, "finetune": finetune,
              "predict": predict, "annotate": annotate_throughput}
  result: dict[str, Any] = {"environment": environment()}
  _log(result["environment"])
  _write(result)
  for name in _SECTIONS.value:
    if _over_budget():
      result[name] = {"skipped": f"budget of {_BUDGET.value:.0f} s spent"}
      continue
    t = time.perf_counter()
    try:
      result[name] = sections[name]()
    except Exception as e:  # record it, run the rest
      result[name] = {"error": f"{type(e).__name__}: {e}",
                      "traceback": traceback.format_exc()[-3000:]}
      print(result[name]["traceback"], file=sys.stderr, flush=True)
    result.setdefault("section_seconds", {})[name] = time.perf_counter() - t
    _write(result)
  result["total_seconds"] = time.perf_counter() - T0
  _write(result)
  print(json.dumps({k: result[k] for k in ("section_seconds", "total_seconds")}), flush=True)


if __name__ == "__main__":
  app.run(main)
