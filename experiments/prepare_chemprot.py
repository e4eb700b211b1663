r"""Writes BLUE-layout ChemProt TSVs from the raw release (fine-tuning does not need it).

  python -m experiments.prepare_chemprot --raw_dir=RAW --out_dir=/tmp/chemprot_tsv
"""
from __future__ import annotations

import json
import os

from absl import app, flags

from data_pipeline import paths
from data_pipeline.tasks import chemprot
from data_pipeline.tasks import re as re_data

_RAW = flags.DEFINE_string("raw_dir", "", "ChemProt raw release (holds chemprot_training/); "
                           "default: <data>/re/chemprot/raw")
_OUT = flags.DEFINE_string("out_dir", None, "where to write train/dev/test.tsv", required=True)
_MULTI = flags.DEFINE_enum("multi_label", "both", ["both", "first"],
                           "pairs with two gold labels: one row per label (BLUE) or the first")


def main(argv):
  del argv
  raw = _RAW.value or str(paths.data_path("re", "chemprot", "raw"))
  raw_dir = re_data.chemprot_raw_dir(raw)
  if raw_dir is None:
    raise SystemExit(f"{raw}: no chemprot_training/ inside; not a raw ChemProt release")
  examples, stats = chemprot.build_all(raw_dir, _MULTI.value)
  os.makedirs(_OUT.value, exist_ok=True)
  for split, rows in examples.items():
    with open(os.path.join(_OUT.value, f"{split}.tsv"), "w", encoding="utf-8") as f:
      f.write("index\tsentence\tlabel\n")
      for e in rows:
        f.write(f"{e.guid}\t{e.text}\t{e.label}\n")
  with open(os.path.join(_OUT.value, "stats.json"), "w", encoding="utf-8") as f:
    json.dump(stats, f, indent=2)
  print(json.dumps(stats, indent=2))


if __name__ == "__main__":
  app.run(main)
