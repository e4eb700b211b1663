"""BioASQ factoid measures: hand-computed cases from the official evaluator's definitions
(EvaluatorTask1b, phase B: lower-cased whole-string equality, strict = first answer,
lenient = any of the top 5, MRR = 1/rank of the first correct answer)."""
import json

import pytest

from biobert_jax.metrics import bioasq

GOLDEN = {
    "q1": [["RPE65"], ["retinal pigment epithelium 65"]],
    "q2": [["BRCA1", "breast cancer 1"]],
    "q3": [["aspirin"]],
    "q4": [["TP53"]],
}


def test_question_scores_by_hand():
  # Correct at rank 1, matched case-insensitively against the 2nd entity's synonym.
  assert bioasq.question_scores(GOLDEN["q1"], ["Retinal Pigment Epithelium 65", "x"]) == {
      "strict_accuracy": 1.0, "lenient_accuracy": 1.0, "mrr": 1.0}
  # Correct at rank 3 through a synonym.
  assert bioasq.question_scores(GOLDEN["q2"], ["a", "b", "Breast Cancer 1"]) == {
      "strict_accuracy": 0.0, "lenient_accuracy": 1.0, "mrr": pytest.approx(1 / 3)}
  # Whole-string comparison: a superstring or extra whitespace does not match.
  assert bioasq.question_scores(GOLDEN["q3"], ["aspirin tablets", " aspirin"])["mrr"] == 0.0
  # Only the top 5 count: a correct 6th answer scores nothing.
  assert bioasq.question_scores(GOLDEN["q4"], ["a", "b", "c", "d", "e", "tp53"]) == {
      "strict_accuracy": 0.0, "lenient_accuracy": 0.0, "mrr": 0.0}


def test_set_scores_by_hand_missing_questions_count_as_wrong():
  predictions = {
      "q1": ["rpe65"],                       # rank 1
      "q2": ["x", "brca1"],                  # rank 2
      "q3": ["ibuprofen"],                   # wrong
      # q4 missing: counts 0, denominator stays 4
      "not-golden": ["whatever"],            # ignored
  }
  out = bioasq.factoid_scores(GOLDEN, predictions)
  assert out["num_questions"] == 4 and out["num_answered"] == 3
  assert out["strict_accuracy"] == pytest.approx(1 / 4)
  assert out["lenient_accuracy"] == pytest.approx(2 / 4)
  assert out["mrr"] == pytest.approx((1 + 1 / 2) / 4)
  assert bioasq.factoid_scores({}, predictions)["mrr"] == 0.0


def test_read_golden_filters_factoids(tmp_path, data_dir):
  golden = bioasq.read_golden_factoids(data_dir / "qa/bioasq6b/6B1_golden.json")
  raw = json.loads((data_dir / "qa/bioasq6b/6B1_golden.json").read_text())
  factoid = [q for q in raw["questions"] if q["type"] == "factoid"]
  assert len(golden) == len(factoid) == 31
  assert all(isinstance(s, str) for entities in golden.values() for e in entities for s in e)
  # A golden answer scores perfectly against itself.
  preds = {qid: [entities[0][0]] for qid, entities in golden.items()}
  assert bioasq.factoid_scores(golden, preds)["strict_accuracy"] == 1.0
  bad = tmp_path / "bad.json"
  bad.write_text('{"questions": [\n{"id": "a", "type": "factoid", "exact_answer": }]}')
  with pytest.raises(ValueError, match="bad.json:2"):
    bioasq.read_golden_factoids(bad)
