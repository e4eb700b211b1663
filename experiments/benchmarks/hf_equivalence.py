r"""Our NER predict vs transformers' pipeline on the exported model, on real abstracts.

  python -m experiments.benchmarks.hf_equivalence --workdir=/tmp/hf_eq --num_abstracts=100

Fine-tunes MiniLM-L6 on NCBI-disease (--train_examples sentences, one epoch, with
--config.export_hf, so the transformers directory is the one fine-tuning writes) unless
--model names a fine-tuned workdir, then compares entities (type, start, end) on the
first --num_abstracts PubMed abstracts of the shared data two ways:
* one window: both sides see each whole abstract at once (our window and the tokenizer's
  model_max_length set to 512) -> expected identical;
* windowed: the model's own window (128 pieces, stride 64); the pipeline with
  `stride = 126 - doc_stride`, i.e. the same windows. Differences can only come from
  words seen by two windows; each differing entity is checked to touch an overlap.
Prints one JSON row.
"""
from __future__ import annotations

import os

os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402

import transformers  # noqa: E402
from absl import app, flags  # noqa: E402

from biobert_jax.runtime import host_memory  # noqa: E402
from biobert_jax.trainers import predict  # noqa: E402
from biobert_jax.trainers import finetune as finetune_lib  # noqa: E402
from data_pipeline.paths import data_path  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/hf_equivalence", "Fine-tuning workdir.")
_MODEL = flags.DEFINE_string("model", "", "An existing fine-tuned workdir (skips training).")
_NUM = flags.DEFINE_integer("num_abstracts", 100, "Abstracts compared.")
_TRAIN = flags.DEFINE_integer("train_examples", 1000, "Training sentences (one epoch).")


def finetune(workdir: str, train_examples: int) -> str:
  from experiments.configs import finetune as finetune_config
  config = finetune_config.get_config("ner")
  config.update(data_dir=str(data_path("ner", "NCBI-disease")), max_train_examples=train_examples,
                max_eval_examples=200, num_epochs=1, batch_size=32,
                export_hf=True, tensorboard=False)
  config.optim.learning_rate = 3e-4
  results = finetune_lib.run(config, workdir)
  print(f"fine-tuned: dev f1 {results['dev']['f1']:.4f} test f1 {results['test']['f1']:.4f}",
        flush=True)
  return workdir


def overlap_zones(tok, text: str, max_length: int, overlap: int) -> list[tuple[int, int]]:
  enc = tok(text, truncation=True, max_length=max_length, stride=overlap,
            return_overflowing_tokens=True, return_offsets_mapping=True)
  windows = []
  for offsets in enc["offset_mapping"]:
    real = [o for o in offsets if o[1] > o[0]]
    windows.append((real[0][0], real[-1][1]))
  return [(windows[k + 1][0], windows[k][1]) for k in range(len(windows) - 1)]


def compare(workdir: str, hf_dir: str, texts: list[str]) -> dict:
  spans = lambda es, key: [(e[key], e["start"], e["end"]) for e in es]  # noqa: E731
  predictor = predict.NerPredictor(workdir)
  window, stride = predictor.max_seq_length, predictor.stride
  row: dict = {"abstracts": len(texts), "window": window, "doc_stride": stride}
  tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
  row["pieces_mean"] = round(sum(len(tok(t)["input_ids"]) for t in texts) / len(texts), 1)
  # Windowed: the model as exported.
  pipe = transformers.pipeline("token-classification", model=hf_dir,
                               aggregation_strategy="first", framework="pt")
  t = time.perf_counter()
  ours = predictor.tag(texts)
  row["ours_seconds"] = round(time.perf_counter() - t, 2)
  same = differ = unexplained = 0
  t = time.perf_counter()
  theirs_all = [spans(pipe(text, stride=window - 2 - stride), "entity_group") for text in texts]
  row["pipeline_seconds"] = round(time.perf_counter() - t, 2)
  for text, mine, theirs in zip(texts, ours, theirs_all):
    mine = spans(mine, "type")
    zones = overlap_zones(tok, text, window, window - 2 - stride)
    for _, start, end in set(mine) ^ set(theirs):
      differ += 1
      unexplained += not any(start < z1 and end > z0 for z0, z1 in zones)
    same += len(set(mine) & set(theirs))
  row["windowed"] = {"entities_ours": sum(len(o) for o in ours),
                     "entities_pipeline": sum(len(t) for t in theirs_all),
                     "same": same, "differ": differ, "differ_outside_overlaps": unexplained}
  # One window: whole abstracts both ways.
  predictor.max_seq_length = 512
  tok512 = transformers.AutoTokenizer.from_pretrained(hf_dir, model_max_length=512)
  pipe512 = transformers.pipeline("token-classification", model=hf_dir, tokenizer=tok512,
                                  aggregation_strategy="first", framework="pt")
  ours = predictor.tag(texts)
  identical = entities = 0
  for text, mine in zip(texts, ours):
    identical += spans(mine, "type") == spans(pipe512(text), "entity_group")
    entities += len(mine)
  row["one_window"] = {"abstracts_identical": identical, "entities": entities}
  return row


def main(argv):
  del argv
  host_memory.keep_host_buffers()
  workdir = _MODEL.value or finetune(_WORKDIR.value, _TRAIN.value)
  hf_dir = str(pathlib.Path(workdir) / "model_hf")
  if not os.path.isdir(hf_dir):
    from biobert_jax.trainers import hf_export
    hf_export.export_model_dir(workdir, hf_dir)
  lines = data_path("pretrain", "pubmed_abstracts.txt").read_text().splitlines()
  texts = [l for l in lines if l.strip()][:_NUM.value]
  print(json.dumps(compare(workdir, hf_dir, texts)), flush=True)


if __name__ == "__main__":
  app.run(main)
