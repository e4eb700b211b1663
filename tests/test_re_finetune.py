"""Tiny end-to-end RE fine-tunes through the shared launcher (random-init tiny model)."""
import csv
import json

import pytest
from sklearn.metrics import precision_recall_fscore_support

from biobert_jax.trainers import finetune as finetune_lib
from experiments.configs.finetune import get_config


# End-to-end fine-tuning runs: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

def _tiny_config(minilm_dir, data_dir, **re_overrides):
  c = get_config("re")
  c.init_checkpoint = ""
  c.model_preset = "tiny"
  c.vocab_path = str(minilm_dir / "vocab.txt")
  c.data_dir = str(data_dir)
  c.max_train_examples, c.max_eval_examples = 16, 12
  c.num_epochs, c.batch_size, c.eval_batch_size, c.max_seq_length = 1, 8, 8, 64
  c.save_model = False
  for k, v in re_overrides.items():
    c.re[k] = v
  return c


def _read_predictions(path):
  with open(path, encoding="utf-8") as f:
    return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_gad_end_to_end(tmp_path, minilm_dir, data_dir):
  c = _tiny_config(minilm_dir, data_dir / "re/gad", dev_fraction=0.25)
  results = finetune_lib.run(c, str(tmp_path))
  on_disk = json.loads((tmp_path / "eval_results.json").read_text())
  assert on_disk["task"] == "re" and on_disk["primary_metric"] == "f1"
  for split in ("dev", "test"):   # dev carved from train (dev_fraction)
    assert {"precision", "recall", "f1"} <= set(on_disk[split])
    rows = _read_predictions(tmp_path / f"predictions_{split}.tsv")
    assert len(rows) == on_disk[split]["num_examples"] == 12
    p, r, f, _ = precision_recall_fscore_support(
        [x["label"] for x in rows], [x["prediction"] for x in rows], average="binary",
        pos_label="1", zero_division=0)
    assert (on_disk[split]["precision"], on_disk[split]["recall"], on_disk[split]["f1"]) == \
        pytest.approx((p, r, f))
  assert results["test"]["f1"] == on_disk["test"]["f1"]


def test_chemprot_raw_entity_start_end_to_end(tmp_path, minilm_dir, data_dir):
  c = _tiny_config(minilm_dir, data_dir / "re/chemprot", pooling="entity_start")
  c.save_model = True
  finetune_lib.run(c, str(tmp_path))
  results = json.loads((tmp_path / "eval_results.json").read_text())
  cpr = ["CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9"]
  for split in ("dev", "test"):
    assert set(results[split]["per_class"]) == set(cpr)
    rows = _read_predictions(tmp_path / f"predictions_{split}.tsv")
    p, r, f, _ = precision_recall_fscore_support(
        [x["label"] for x in rows], [x["prediction"] for x in rows], labels=cpr,
        average="micro", zero_division=0)
    assert (results[split]["precision"], results[split]["recall"], results[split]["f1"]) == \
        pytest.approx((p, r, f))
  info = json.loads((tmp_path / "model/task.json").read_text())
  assert info["pooling"] == "entity_start"
  assert info["labels"] == ["false"] + cpr
  assert info["extra_tokens"] == ["@CHEMICAL$", "@GENE$", "@CHEM-GENE$"]
