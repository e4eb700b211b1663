"""Entity-level NER scores with conlleval's chunk semantics (IOB1/IOB2/IOE/IOBES; an `I-X`
after `O` starts an entity), micro P/R/F1 overall and per type, plus token accuracy.
"""
from __future__ import annotations

import collections
from collections.abc import Sequence

Entity = tuple[str, int, int]  # (type, start, end) with `end` inclusive, token indices


def _split_tag(tag: str) -> tuple[str, str]:
  """'B-Disease' -> ('B', 'Disease'); 'O' -> ('O', ''); bare 'B' -> ('B', '_')."""
  if tag == "O" or not tag:
    return "O", ""
  prefix, _, entity_type = tag.partition("-")
  return prefix, entity_type or "_"


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, entity_type: str) -> bool:
  # conlleval.pl endOfChunk (the "[" / "]" bracket tags are not used in NER corpora).
  return (prev_tag in ("E", "S")
          or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
          or (prev_tag != "O" and prev_type != entity_type))


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, entity_type: str) -> bool:
  # conlleval.pl startOfChunk.
  return (tag in ("B", "S")
          or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
          or (tag != "O" and prev_type != entity_type))


def get_entities(tags: Sequence[str]) -> list[Entity]:
  """The entities of one tag sequence, in order of their start."""
  entities = []
  prev_tag, prev_type, start = "O", "", None
  for i, tag in enumerate(list(tags) + ["O"]):  # a trailing O closes a final entity
    cur_tag, cur_type = _split_tag(tag)
    if start is not None and _end_of_chunk(prev_tag, cur_tag, prev_type, cur_type):
      entities.append((prev_type, start, i - 1))
      start = None
    if _start_of_chunk(prev_tag, cur_tag, prev_type, cur_type):
      start = i
    prev_tag, prev_type = cur_tag, cur_type
  return entities


def _prf(correct: int, num_pred: int, num_gold: int) -> dict[str, float]:
  p = correct / num_pred if num_pred else 0.0
  r = correct / num_gold if num_gold else 0.0
  f = 2 * p * r / (p + r) if p + r else 0.0
  return {"precision": p, "recall": r, "f1": f}


def ner_scores(gold: Sequence[Sequence[str]],
               pred: Sequence[Sequence[str]]) -> dict[str, object]:
  """conlleval scores of predicted tag sequences against gold ones.

  Returns:
    {"precision", "recall", "f1", "accuracy", "num_gold", "num_pred", "num_correct",
     "num_tokens", "per_type": {type: {"precision", "recall", "f1", "num_gold",
     "num_pred", "num_correct"}}}.

  Raises:
    ValueError: different numbers of sentences, or of tokens in a sentence.
  """
  if len(gold) != len(pred):
    raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted ones")
  gold_by_type: dict[str, int] = collections.Counter()
  pred_by_type: dict[str, int] = collections.Counter()
  correct_by_type: dict[str, int] = collections.Counter()
  tokens = correct_tokens = 0
  for k, (g, p) in enumerate(zip(gold, pred)):
    if len(g) != len(p):
      raise ValueError(f"sentence {k}: {len(g)} gold tags but {len(p)} predicted ones")
    tokens += len(g)
    correct_tokens += sum(a == b for a, b in zip(g, p))
    g_entities, p_entities = set(get_entities(g)), set(get_entities(p))
    for t, _, _ in g_entities:
      gold_by_type[t] += 1
    for t, _, _ in p_entities:
      pred_by_type[t] += 1
    for t, _, _ in g_entities & p_entities:
      correct_by_type[t] += 1
  num_gold, num_pred = sum(gold_by_type.values()), sum(pred_by_type.values())
  num_correct = sum(correct_by_type.values())
  result: dict[str, object] = _prf(num_correct, num_pred, num_gold)
  result.update(accuracy=correct_tokens / tokens if tokens else 0.0, num_gold=num_gold,
                num_pred=num_pred, num_correct=num_correct, num_tokens=tokens)
  per_type = {}
  for t in sorted(set(gold_by_type) | set(pred_by_type)):
    per_type[t] = _prf(correct_by_type[t], pred_by_type[t], gold_by_type[t])
    per_type[t].update(num_gold=gold_by_type[t], num_pred=pred_by_type[t],
                       num_correct=correct_by_type[t])
  result["per_type"] = per_type
  return result


def format_scores(scores: dict) -> str:
  """A conlleval-like text summary."""
  lines = [f"processed {scores['num_tokens']} tokens with {scores['num_gold']} phrases; "
           f"found: {scores['num_pred']} phrases; correct: {scores['num_correct']}.",
           f"accuracy: {100 * scores['accuracy']:6.2f}%; precision: "
           f"{100 * scores['precision']:6.2f}%; recall: {100 * scores['recall']:6.2f}%; "
           f"FB1: {100 * scores['f1']:6.2f}"]
  for t, s in scores["per_type"].items():
    lines.append(f"{t:>17}: precision: {100 * s['precision']:6.2f}%; recall: "
                 f"{100 * s['recall']:6.2f}%; FB1: {100 * s['f1']:6.2f}  {s['num_pred']}")
  return "\n".join(lines)
