"""The label names of a checkpoint's task heads, wherever the checkpoint keeps them.

* transformers directory: config.json `id2label` (transformers writes LABEL_0, LABEL_1, ...
  when a model was built without names: those count as no names);
* our fine-tuned model directory: task.json `labels` (or `heads` for multi-task NER);
* TF1 fine-tuned checkpoint: `labels.txt` beside it (one label per line, row order).

Used by head grafting (`surgery.graft_encoder(head_labels=...)`) to keep a head only in
our label order.
"""
from __future__ import annotations

import json
import os
import pathlib
import re

_DEFAULT_NAME = re.compile(r"^LABEL_\d+$")
LABELS_FILE = "labels.txt"


def checkpoint_labels(path: str | os.PathLike) -> dict[str, list[str]]:
  """{head scope: label names in row order} for the heads whose names are known."""
  p = pathlib.Path(path)
  d = p if p.is_dir() else p.parent
  if (d / "task.json").exists():
    info = json.loads((d / "task.json").read_text(encoding="utf-8"))
    if info.get("task") == "multi_ner":
      return {h["name"]: list(h["labels"]) for h in info.get("heads", [])}
    if info.get("labels"):
      return {"classifier": list(info["labels"])}
  if (d / "config.json").exists():
    config = json.loads((d / "config.json").read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    names = [id2label[k] for k in sorted(id2label, key=int)] if id2label else []
    if names and not all(_DEFAULT_NAME.match(str(n)) for n in names):
      return {"classifier": [str(n) for n in names]}
  if (d / LABELS_FILE).exists():
    lines = (d / LABELS_FILE).read_text(encoding="utf-8").splitlines()
    return {"classifier": [l.strip() for l in lines if l.strip()]}
  return {}
