"""biobert_jax.metrics.re against scikit-learn's definitions (computed independently)."""
import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from biobert_jax.metrics import re as re_metrics

CPR = ["CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_matches_sklearn(seed):
  rng = np.random.default_rng(seed)
  gold = rng.integers(0, 2, 200)
  pred = np.where(rng.random(200) < 0.7, gold, 1 - gold)
  ours = re_metrics.binary_prf(gold, pred, positive=1)
  p, r, f, _ = precision_recall_fscore_support(gold, pred, average="binary", pos_label=1,
                                               zero_division=0)
  assert ours["precision"] == pytest.approx(p)
  assert ours["recall"] == pytest.approx(r)
  assert ours["f1"] == pytest.approx(f)


def test_binary_string_labels_and_corner_cases():
  # String labels as read from the TSVs; "1" is the positive class.
  out = re_metrics.binary_prf(["1", "0", "1", "0"], ["1", "1", "0", "0"], positive="1")
  assert (out["tp"], out["fp"], out["fn"]) == (1, 1, 1)
  assert out["precision"] == 0.5 and out["recall"] == 0.5 and out["f1"] == 0.5
  # Never predicting the positive class: precision 0 (sklearn zero_division=0), not NaN.
  out = re_metrics.binary_prf([1, 1, 0], [0, 0, 0])
  assert out == pytest.approx({**out, "precision": 0.0, "recall": 0.0, "f1": 0.0})
  with pytest.raises(ValueError, match="same length"):
    re_metrics.binary_prf([1, 0], [1])


@pytest.mark.parametrize("seed", [0, 1])
def test_chemprot_micro_matches_sklearn(seed):
  rng = np.random.default_rng(seed)
  labels = np.array(["false"] + CPR)
  gold = labels[rng.choice(6, 500, p=[0.7, 0.05, 0.1, 0.05, 0.05, 0.05])]
  pred = np.where(rng.random(500) < 0.6, gold, labels[rng.integers(0, 6, 500)])
  ours = re_metrics.micro_prf(gold, pred, CPR)
  p, r, f, _ = precision_recall_fscore_support(gold, pred, labels=CPR, average="micro",
                                               zero_division=0)
  assert (ours["precision"], ours["recall"], ours["f1"]) == pytest.approx((p, r, f))
  ps, rs, fs, support = precision_recall_fscore_support(gold, pred, labels=CPR,
                                                        average=None, zero_division=0)
  for k, label in enumerate(CPR):
    c = ours["per_class"][label]
    assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((ps[k], rs[k], fs[k]))
    assert c["support"] == support[k]


def test_micro_excludes_false_and_counts_confusions_twice():
  gold = ["CPR:3", "CPR:3", "false", "CPR:4", "false"]
  pred = ["CPR:3", "CPR:4", "CPR:9", "false", "false"]
  out = re_metrics.micro_prf(gold, pred, CPR)
  # TP: 1 (CPR:3). FP: CPR:4 (wrong class) + CPR:9 (on a negative) = 2.
  # FN: the second CPR:3 and the CPR:4 predicted as false = 2.
  assert (out["tp"], out["fp"], out["fn"]) == (1, 2, 2)
  assert out["precision"] == pytest.approx(1 / 3) and out["recall"] == pytest.approx(1 / 3)
  # A perfect "false"-only corpus: nothing positive anywhere -> all zero, no division error.
  out = re_metrics.micro_prf(["false"] * 3, ["false"] * 3, CPR)
  assert out["f1"] == 0.0 and out["accuracy"] == 1.0
