"""Tiny end-to-end BioASQ fine-tune through the shared launcher (random-init tiny model)."""
import json

import numpy as np
import pytest

from biobert_jax.trainers import finetune as finetune_lib
from experiments.configs.finetune import get_config


@pytest.mark.slow
def test_bioasq_end_to_end(tmp_path, minilm_dir, data_dir):
  c = get_config("qa")
  c.init_checkpoint = ""
  c.model_preset = "tiny"
  c.vocab_path = str(minilm_dir / "vocab.txt")
  c.data_dir = str(data_dir / "qa/bioasq6b")
  c.max_train_examples, c.max_eval_examples = 4, 3
  c.num_epochs, c.batch_size, c.eval_batch_size = 1, 8, 16
  c.max_seq_length, c.doc_stride = 96, 48
  c.save_model = False
  finetune_lib.run(c, str(tmp_path))
  results = json.loads((tmp_path / "eval_results.json").read_text())
  test = results["test"]
  assert len(test["batches"]) == 5
  for name in ("strict_accuracy", "lenient_accuracy", "mrr"):
    # Macro average over batches, as BioBERT reports.
    assert test["average"][name] == pytest.approx(np.mean([b[name] for b in test["batches"]]))
  golden_all = {}
  for i in range(1, 6):
    raw = json.loads((data_dir / f"qa/bioasq6b/6B{i}_golden.json").read_text())
    golden_all.update({q["id"]: q["exact_answer"] for q in raw["questions"]
                       if q["type"] == "factoid"})
  for i, batch in enumerate(test["batches"], start=1):
    assert batch["num_questions"] == batch["num_answered"] == 3
    submission = json.loads((tmp_path / f"predictions_test_batch{i}.json").read_text())
    strict = lenient = rr = 0.0
    for q in submission["questions"]:
      answers = [a[0].lower() for a in q["exact_answer"]]
      assert 1 <= len(answers) <= 5
      synonyms = {s.lower() for entity in golden_all[q["id"]] for s in entity}
      hits = [k for k, a in enumerate(answers) if a in synonyms]
      strict += float(bool(hits) and hits[0] == 0)
      lenient += float(bool(hits))
      rr += 1 / (hits[0] + 1) if hits else 0.0
    n = len(submission["questions"])
    assert (batch["strict_accuracy"], batch["lenient_accuracy"], batch["mrr"]) == \
        pytest.approx((strict / n, lenient / n, rr / n))
