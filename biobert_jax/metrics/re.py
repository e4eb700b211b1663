"""Relation-extraction scores as BioBERT reports them: binary P/R/F1 of class 1 (GAD, EU-ADR),
micro P/R/F1 over CPR:3/4/5/6/9 plus per class (ChemProt); a zero denominator gives 0.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _prf(tp: float, fp: float, fn: float) -> dict[str, float]:
  precision = tp / (tp + fp) if tp + fp else 0.0
  recall = tp / (tp + fn) if tp + fn else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def _check_lengths(gold: Sequence, pred: Sequence) -> tuple[np.ndarray, np.ndarray]:
  gold_arr, pred_arr = np.asarray(gold), np.asarray(pred)
  if gold_arr.shape != pred_arr.shape or gold_arr.ndim != 1:
    raise ValueError(f"gold and predicted labels must be 1-D of the same length, got "
                     f"{gold_arr.shape} and {pred_arr.shape}")
  return gold_arr, pred_arr


def binary_prf(gold: Sequence, pred: Sequence, positive=1) -> dict[str, float]:
  """Precision/recall/F1 of the `positive` class (GAD, EU-ADR), plus counts."""
  gold_arr, pred_arr = _check_lengths(gold, pred)
  gold_pos, pred_pos = gold_arr == positive, pred_arr == positive
  tp = float(np.sum(gold_pos & pred_pos))
  fp = float(np.sum(~gold_pos & pred_pos))
  fn = float(np.sum(gold_pos & ~pred_pos))
  out = _prf(tp, fp, fn)
  out.update(tp=int(tp), fp=int(fp), fn=int(fn), support=int(gold_pos.sum()),
             accuracy=float(np.mean(gold_arr == pred_arr)) if gold_arr.size else 0.0)
  return out


def micro_prf(gold: Sequence, pred: Sequence, positive_labels: Sequence
              ) -> dict[str, object]:
  """Micro P/R/F1 over `positive_labels` (negatives excluded) and per-class scores.

  A prediction counts as a true positive when it equals the gold label and that label is
  positive; a wrong positive prediction is a false positive of the predicted class *and* a
  false negative of the gold class (if that is positive), exactly as in a confusion matrix
  restricted to the positive columns/rows.
  """
  gold_arr, pred_arr = _check_lengths(gold, pred)
  per_class = {}
  tp_sum = fp_sum = fn_sum = 0.0
  for label in positive_labels:
    g, p = gold_arr == label, pred_arr == label
    tp, fp, fn = float(np.sum(g & p)), float(np.sum(~g & p)), float(np.sum(g & ~p))
    scores = _prf(tp, fp, fn)
    scores["support"] = int(g.sum())
    per_class[str(label)] = scores
    tp_sum, fp_sum, fn_sum = tp_sum + tp, fp_sum + fp, fn_sum + fn
  out: dict[str, object] = dict(_prf(tp_sum, fp_sum, fn_sum))
  out.update(tp=int(tp_sum), fp=int(fp_sum), fn=int(fn_sum),
             accuracy=float(np.mean(gold_arr == pred_arr)) if gold_arr.size else 0.0,
             per_class=per_class)
  return out
