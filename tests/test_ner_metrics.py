"""Entity-level NER scores against seqeval (default mode = conlleval) and conlleval's rules."""
import random

import pytest
from seqeval import metrics as seqeval_metrics
from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities

from biobert_jax.metrics import ner

# seqeval averages empty per-type reports with numpy and warns; the values are not used.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

CORNER_CASES = [
    # (gold, pred) lists of sentences
    ([["B-X", "I-X"]], [["B-X", "I-X"]]),                       # entity at the sentence end
    ([["B-X", "I-Y", "O"]], [["B-X", "I-X", "O"]]),             # type change: two entities
    ([["O", "I-X", "I-X"]], [["O", "B-X", "I-X"]]),             # I- after O starts an entity
    ([["B-X"], ["I-X"]], [["B-X"], ["B-X"]]),                   # no entity across sentences
    ([["B-X", "O", "B-Y"]], [["B-X", "O", "B-X"]]),             # single-token entities
    ([[], ["B-X"]], [[], ["O"]]),                               # empty sentence, nothing found
    ([["O", "O"]], [["O", "O"]]),                               # no entities at all
    ([["B-X", "B-X", "I-X"]], [["B-X", "I-X", "I-X"]]),         # adjacent entities
    ([["B", "I", "O", "B"]], [["B", "I", "O", "I"]]),           # bare tags
    ([["S-X", "B-Y", "E-Y", "O"]], [["S-X", "B-Y", "I-Y", "E-Y"]]),  # IOBES
]


def _random_sentences(rng: random.Random, n: int) -> list[list[str]]:
  tags = ["O", "O", "O", "B-A", "I-A", "B-B", "I-B", "I-C", "B-C"]
  return [[rng.choice(tags) for _ in range(rng.randint(0, 12))] for _ in range(n)]


def _seqeval_per_type(gold, pred):
  report = seqeval_metrics.classification_report(gold, pred, output_dict=True,
                                                 zero_division=0)
  return {k: v for k, v in report.items() if not k.endswith("avg")}


def _check_against_seqeval(gold, pred):
  ours = ner.ner_scores(gold, pred)
  assert ours["precision"] == pytest.approx(
      seqeval_metrics.precision_score(gold, pred, zero_division=0))
  assert ours["recall"] == pytest.approx(seqeval_metrics.recall_score(gold, pred, zero_division=0))
  assert ours["f1"] == pytest.approx(seqeval_metrics.f1_score(gold, pred, zero_division=0))
  if any(gold):
    assert ours["accuracy"] == pytest.approx(seqeval_metrics.accuracy_score(gold, pred))
  reference = _seqeval_per_type(gold, pred)
  for entity_type, scores in reference.items():
    mine = ours["per_type"][entity_type]
    assert mine["num_gold"] == scores["support"]
    for key in ("precision", "recall", "f1"):
      assert mine[key] == pytest.approx(scores[f"{key}-score" if key == "f1" else key]), (
          entity_type, key)


@pytest.mark.parametrize("gold,pred", CORNER_CASES)
def test_corner_cases_match_seqeval(gold, pred):
  _check_against_seqeval(gold, pred)
  for sentence in gold + pred:
    assert [(t, s, e) for t, s, e in ner.get_entities(sentence)] == [
        (t, s, e) for t, s, e in seqeval_entities(sentence)]


def test_random_sequences_match_seqeval():
  rng = random.Random(0)
  for _ in range(40):
    gold = _random_sentences(rng, 8)
    pred = [[rng.choice([t, t, "O", "I-A", "B-B"]) for t in s] for s in gold]
    _check_against_seqeval(gold, pred)


def test_conlleval_definition_by_hand():
  # conlleval: gold has 3 phrases (A@0-1, B@3, A@5), found 3 (A@0-1, A@3, A@5-6); only A@0-1
  # has the same type, start and end -> P = R = 1/3; 5 of 7 tokens have the same tag.
  gold = [["B-A", "I-A", "O", "B-B", "O", "B-A", "O"]]
  pred = [["B-A", "I-A", "O", "B-A", "O", "B-A", "I-A"]]
  s = ner.ner_scores(gold, pred)
  assert (s["num_gold"], s["num_pred"], s["num_correct"]) == (3, 3, 1)
  assert s["precision"] == pytest.approx(1 / 3) and s["f1"] == pytest.approx(1 / 3)
  assert s["accuracy"] == pytest.approx(5 / 7)
  assert s["per_type"]["B"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "num_gold": 1,
                                "num_pred": 0, "num_correct": 0}
  assert "FB1:  33.33" in ner.format_scores(s)


def test_no_predictions_gives_zero_and_length_mismatch_fails():
  s = ner.ner_scores([["B-A", "O"]], [["O", "O"]])
  assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
  with pytest.raises(ValueError, match="sentence 0"):
    ner.ner_scores([["O", "O"]], [["O"]])
