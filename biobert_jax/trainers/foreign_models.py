"""Model directories written elsewhere, used as fine-tuned model directories.

* A transformers task directory (BertForTokenClassification / ...SequenceClassification /
  ...QuestionAnswering with `id2label` and a WordPiece tokenizer): read by
  `checkpoints.hf_tasks.read_task_dir`.
* A TF1 fine-tuned checkpoint (BioBERT run_ner / run_re / run_classifier / run_squad):
  bert_config.json + model.ckpt-N + vocab.txt, plus its label list as `labels.txt` (one
  label per line, in the order of the output rows; BioBERT run_ner's is
  `[PAD] B I O X [CLS] [SEP]`) unless the head is run_squad's QA head. The task is that
  of `task.json` when the directory has one; otherwise qa for a SQuAD head, ner when every
  label is a tag (O, B-*, I-*, or BioBERT's B/I/X/[CLS]/[SEP]/[PAD]), else re.
  Casing follows the vocabulary, windows are 128 pieces (at most the position table,
  stride half of it) unless task.json says otherwise. BioBERT run_ner's bare B/I tags give
  entities of type "" (its label list names no type).
"""
from __future__ import annotations

import json
import pathlib
import re
from typing import Any

from biobert_jax.checkpoints import hf_tasks, tf1
from biobert_jax.config import BertConfig

LABELS_FILE = "labels.txt"
_TAG = re.compile(r"^(O|[BIESX]|[BIES]-.+|\[(PAD|CLS|SEP)\])$")


def read_foreign(path: pathlib.Path) -> tuple[dict, BertConfig, Any] | None:
  """(info, config, params) when `path` is a HF task directory or a TF1 fine-tuned
  checkpoint directory; None when it is neither (a native model directory)."""
  if (path / "task.json").exists() and not tf1.find_checkpoint(path):
    return None
  if hf_tasks.is_task_dir(path):
    return hf_tasks.read_task_dir(path)
  if path.is_dir() and tf1.find_checkpoint(path) is not None:
    return _read_tf1(path)
  return None


def _read_tf1(path: pathlib.Path) -> tuple[dict, BertConfig, Any]:
  config, params, _ = tf1.load(path, strict=False)
  head = "qa_outputs" if "qa_outputs" in params else "classifier"
  if head not in params:
    raise ValueError(f"{path}: a TF1 checkpoint without a fine-tuned head (output_weights "
                     "or cls/squad/output_weights): not a fine-tuned model")
  info: dict[str, Any] = {}
  if (path / "task.json").exists():
    info = json.loads((path / "task.json").read_text(encoding="utf-8"))
  if head == "classifier":
    labels_path = path / LABELS_FILE
    if not labels_path.exists() and "labels" not in info:
      raise FileNotFoundError(f"{labels_path} not found: a TF1 fine-tuned checkpoint needs "
                              "its label list (one label per line, in output-row order)")
    labels = info.get("labels") or [l.strip() for l in
                                    labels_path.read_text(encoding="utf-8").splitlines()
                                    if l.strip()]
    rows = params[head]["bias"].shape[0]
    if len(labels) != rows:
      raise ValueError(f"{labels_path}: {len(labels)} labels but the checkpoint's "
                       f"output_weights has {rows} rows")
    info.setdefault("labels", labels)
    info.setdefault("task", "ner" if all(_TAG.match(l) for l in labels) else "re")
  else:
    info.setdefault("task", "qa")
  if not (path / "vocab.txt").exists():
    raise FileNotFoundError(f"{path / 'vocab.txt'} not found next to the TF1 checkpoint")
  if "lowercase" not in info:
    from biobert_jax.trainers.model_dir import vocab_is_uncased
    info["lowercase"] = vocab_is_uncased(str(path / "vocab.txt"))
  info.setdefault("max_seq_length", min(128, config.max_position_embeddings))
  info.setdefault("doc_stride", info["max_seq_length"] // 2)
  info.setdefault("extra_tokens", [])
  info.setdefault("pooling", "cls")
  info["source"] = f"TF1 checkpoint {tf1.find_checkpoint(path)}"
  return info, config, params
