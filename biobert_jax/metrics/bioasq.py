"""BioASQ Task B factoid measures as the official evaluator defines them (strict/lenient
accuracy, MRR over the top 5; lower-cased whole-string match against any synonym).

One deliberate difference: a golden question without a prediction counts as wrong.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

from biobert_jax import fs

TOP_K = 5


def normalize_answer(text: str) -> str:
  """The evaluator's normalisation: lower-casing only (Java `toLowerCase`)."""
  return text.lower()


def read_golden_factoids(path: str | os.PathLike) -> dict[str, list[list[str]]]:
  """Reads a BioASQ golden file; returns {question id: [[synonym, ...], ...]} (factoid only)."""
  with fs.open(path, encoding="utf-8") as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
  if "questions" not in data:
    raise ValueError(f"{path}: no 'questions' key; not a BioASQ golden file")
  golden = {}
  for i, q in enumerate(data["questions"]):
    if q.get("type") != "factoid":
      continue
    answer = q.get("exact_answer")
    if not isinstance(answer, list):
      raise ValueError(f"{path}: questions[{i}] (id {q.get('id')}): factoid exact_answer "
                       f"must be a list, got {type(answer).__name__}")
    # Older files hold a flat list of synonyms for factoids: one entity with synonyms.
    if answer and all(isinstance(a, str) for a in answer):
      answer = [answer]
    golden[q["id"]] = [[str(s) for s in entity] for entity in answer]
  return golden


def question_scores(golden_entities: Sequence[Sequence[str]], ranked_answers: Sequence[str],
                    top_k: int = TOP_K) -> dict[str, float]:
  """Strict / lenient accuracy and reciprocal rank of one question."""
  synonyms = {normalize_answer(s) for entity in golden_entities for s in entity}
  rank = 0
  for i, answer in enumerate(list(ranked_answers)[:top_k]):
    if normalize_answer(answer) in synonyms:
      rank = i + 1
      break
  return {"strict_accuracy": float(rank == 1), "lenient_accuracy": float(rank > 0),
          "mrr": 1.0 / rank if rank else 0.0}


def factoid_scores(golden: Mapping[str, Sequence[Sequence[str]]],
                   predictions: Mapping[str, Sequence[str]],
                   top_k: int = TOP_K) -> dict[str, float]:
  """Set-level strict accuracy, lenient accuracy and MRR over the golden factoid questions.

  Args:
    golden: {question id: golden entities (lists of synonyms)}, e.g. from
      `read_golden_factoids`.
    predictions: {question id: ranked answer strings}; ids not in `golden` are ignored,
      golden ids missing here score 0.
    top_k: answers per question that count (BioASQ allows 5).
  """
  totals = {"strict_accuracy": 0.0, "lenient_accuracy": 0.0, "mrr": 0.0}
  answered = 0
  for qid, entities in golden.items():
    if qid not in predictions:
      continue
    answered += 1
    for name, value in question_scores(entities, predictions[qid], top_k).items():
      totals[name] += value
  n = len(golden)
  out = {name: (value / n if n else 0.0) for name, value in totals.items()}
  out.update(num_questions=n, num_answered=answered)
  return out
