"""Extractive QA input (SQuAD v1.1 layout, as BioBERT ships BioASQ) and its featurisation
into run_squad's doc_stride windows.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any
from collections.abc import Sequence

import numpy as np

from data_pipeline import textio
from data_pipeline.errors import InputError

_BIOASQ_ID = re.compile(r"^(.+)_(\d{3})$")


@dataclasses.dataclass(frozen=True)
class QAExample:
  """One (question, context) pair; answers are (text, char start) in `context`."""
  qas_id: str
  question: str
  context: str
  answers: tuple[tuple[str, int], ...] = ()

  @property
  def question_id(self) -> str:
    """The BioASQ question id: `qas_id` without its `_<nnn>` context suffix."""
    return question_id_of(self.qas_id)


def question_id_of(qas_id: str) -> str:
  m = _BIOASQ_ID.match(qas_id)
  return m.group(1) if m else qas_id


def read_squad(path: str | os.PathLike, require_answers: bool = False) -> list[QAExample]:
  """Reads a SQuAD-v1.1-layout file; checks that every answer_start points at its text.

  Raises:
    InputError: naming the file (and line, or the JSON path of the entry) for invalid
      UTF-8 or JSON, a missing or mistyped field, or an answer that is not in its context.
  """
  data = textio.read_json(path)
  if not isinstance(data, dict) or not isinstance(data.get("data"), list):
    raise InputError(f"{path}: no top-level 'data' list; not SQuAD layout")
  examples = []
  for a, article in enumerate(data["data"]):
    # An article without `paragraphs` is an error, not an empty article: a file with the
    # key misspelt would otherwise evaluate on nothing without a word.
    paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
    if not isinstance(paragraphs, list):
      title = article.get("title") if isinstance(article, dict) else None
      raise InputError(f"{path}: data[{a}]{f' ({title!r})' if title else ''} must be an "
                       f"object with a 'paragraphs' list (got {type(paragraphs).__name__} "
                       "for 'paragraphs')")
    for p, paragraph in enumerate(paragraphs):
      where = f"{path}: data[{a}].paragraphs[{p}]"
      if (not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str)
          or not isinstance(paragraph.get("qas"), list)):
        raise InputError(f"{where}: needs 'context' (a string) and 'qas' (a list)")
      context = paragraph["context"]
      for qa in paragraph["qas"]:
        if not isinstance(qa, dict):
          raise InputError(f"{where}: a qas entry is not an object")
        for key in ("id", "question"):
          if not isinstance(qa.get(key), str):
            raise InputError(f"{where}: a qas entry has no {key!r} string")
        answers = []
        raw_answers = qa.get("answers", [])
        if not isinstance(raw_answers, list):
          raise InputError(f"{where} (id {qa['id']}): 'answers' must be a list")
        for ans in raw_answers:
          text = ans.get("text") if isinstance(ans, dict) else None
          start = ans.get("answer_start") if isinstance(ans, dict) else None
          problem = _answer_problem(ans, text, start)
          if problem:
            raise InputError(f"{where} (id {qa['id']}): {problem}; an answer needs 'text' "
                             "(a non-empty string) and 'answer_start' (an integer >= 0)")
          if context[start:start + len(text)] != text:
            raise InputError(f"{where} (id {qa['id']}): answer_start {start} points at "
                             f"{context[start:start + len(text)]!r}, not {text!r}")
          answers.append((text, start))
        if require_answers and not answers:
          raise InputError(f"{where} (id {qa['id']}): no answers in a training file")
        examples.append(QAExample(qa["id"], qa["question"], context, tuple(answers)))
  return examples


def _answer_problem(ans: Any, text: Any, start: Any) -> str:
  """What is wrong with one answer entry ("" when nothing)."""
  if not isinstance(ans, dict):
    return f"answer {ans!r} is not an object"
  if "text" not in ans:
    return "answer has no 'text'"
  if not isinstance(text, str):
    return f"answer text {text!r} is not a string"
  if not text.strip():
    return f"answer text {text!r} is empty"
  if "answer_start" not in ans:
    return "answer has no 'answer_start'"
  if isinstance(start, bool) or not isinstance(start, int):
    return f"answer_start {start!r} is not an integer"
  if start < 0:
    return f"answer_start {start} is negative"
  return ""


def _char_to_piece_span(offsets: Sequence[tuple[int, int]], start: int, end: int
                        ) -> tuple[int, int] | None:
  """First/last piece overlapping characters [start, end), or None."""
  first = next((i for i, (s, e) in enumerate(offsets) if e > start), None)
  last = next((i for i in range(len(offsets) - 1, -1, -1) if offsets[i][0] < end), None)
  if first is None or last is None or last < first:
    return None
  return first, last


def _windows(num_pieces: int, room: int, doc_stride: int) -> list[tuple[int, int]]:
  """(start, length) of each window, as BERT's run_squad slides them."""
  spans, start = [], 0
  while True:
    length = min(num_pieces - start, room)
    spans.append((start, length))
    if start + length >= num_pieces:
      return spans
    start += min(length, doc_stride)


def featurize_qa(examples: Sequence[QAExample], tokenizer: Any, max_seq_length: int,
                 doc_stride: int, max_query_length: int = 64
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Windows of every example.

  Returns (features, extra):
    features: input_ids, token_type_ids, attention_mask ([F, L] int32), start_positions,
      end_positions ([F] int32; 0 when the answer is not wholly in the window or the example
      has none), example_index ([F] int32).
    extra: `token_offsets` [F, L, 2] int32 (character span in the example's context of each
      context piece; -1 elsewhere) and `max_context` [F, L] bool (the window where this
      piece has the most context on both sides, BERT's `token_is_max_context`).
  """
  questions = tokenizer.encode([e.question for e in examples])
  contexts = tokenizer.encode_with_offsets([e.context for e in examples])
  rows: dict[str, list] = {k: [] for k in ("input_ids", "token_type_ids", "attention_mask",
                                           "start_positions", "end_positions",
                                           "example_index", "token_offsets", "max_context")}
  for index, (example, q_ids, (c_ids, c_offsets)) in enumerate(
      zip(examples, questions, contexts)):
    q_ids = list(q_ids)[:max_query_length]
    room = max_seq_length - len(q_ids) - 3
    if room <= 0:
      raise ValueError(f"max_seq_length {max_seq_length} leaves no room for context after "
                       f"a {len(q_ids)}-piece question (id {example.qas_id})")
    answer = None
    if example.answers:
      text, start = example.answers[0]
      answer = _char_to_piece_span(c_offsets, start, start + len(text))
    windows = _windows(len(c_ids), room, doc_stride)
    for w_start, w_len in windows:
      ids = [tokenizer.cls_id, *q_ids, tokenizer.sep_id, *c_ids[w_start:w_start + w_len],
             tokenizer.sep_id]
      context_start = len(q_ids) + 2
      pad = max_seq_length - len(ids)
      types = [0] * context_start + [1] * (w_len + 1) + [0] * pad
      offsets = np.full((max_seq_length, 2), -1, np.int32)
      max_context = np.zeros(max_seq_length, bool)
      for j in range(w_len):
        piece = w_start + j
        offsets[context_start + j] = c_offsets[piece]
        max_context[context_start + j] = _is_max_context(windows, (w_start, w_len), piece)
      start_pos = end_pos = 0
      if answer is not None and w_start <= answer[0] and answer[1] < w_start + w_len:
        start_pos = answer[0] - w_start + context_start
        end_pos = answer[1] - w_start + context_start
      rows["input_ids"].append(ids + [tokenizer.pad_id] * pad)
      rows["token_type_ids"].append(types)
      rows["attention_mask"].append([1] * len(ids) + [0] * pad)
      rows["start_positions"].append(start_pos)
      rows["end_positions"].append(end_pos)
      rows["example_index"].append(index)
      rows["token_offsets"].append(offsets)
      rows["max_context"].append(max_context)
  features = {k: np.asarray(rows[k], np.int32) for k in (
      "input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions",
      "example_index")}
  if not rows["input_ids"]:
    features = {k: np.zeros((0, max_seq_length) if k in ("input_ids", "token_type_ids",
                                                         "attention_mask") else (0,), np.int32)
                for k in features}
  extra = {"token_offsets": np.asarray(rows["token_offsets"], np.int32).reshape(
               -1, max_seq_length, 2),
           "max_context": np.asarray(rows["max_context"], bool).reshape(-1, max_seq_length)}
  return features, extra


def _is_max_context(windows: Sequence[tuple[int, int]], current: tuple[int, int],
                    piece: int) -> bool:
  """True when `current` is the window giving `piece` the most context (BERT's rule:
  min(left, right) + 0.01 * window length, first window wins ties)."""
  best_score, best = None, None
  for start, length in windows:
    end = start + length - 1
    if piece < start or piece > end:
      continue
    score = min(piece - start, end - piece) + 0.01 * length
    if best_score is None or score > best_score:
      best_score, best = score, (start, length)
  return best == current
