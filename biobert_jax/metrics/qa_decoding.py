"""N-best answer-span decoding for extractive QA (BERT's run_squad) and BioBERT's
per-question pooling of the n-best lists of all contexts (`merge="sum"` or `"max"`).
"""
from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def _softmax(scores: Sequence[float]) -> list[float]:
  if not scores:
    return []
  x = np.asarray(scores, np.float64)
  e = np.exp(x - x.max())
  return (e / e.sum()).tolist()


def window_candidates(start_logits: np.ndarray, end_logits: np.ndarray,
                      token_offsets: np.ndarray, max_context: np.ndarray, n_best: int,
                      max_answer_length: int) -> list[tuple[float, int, int]]:
  """Valid (score, start piece, end piece) pairs of one window.

  Args:
    start_logits, end_logits: [L] logits of the window.
    token_offsets: [L, 2] character span of each context piece, -1 for non-context pieces.
    max_context: [L] bool, whether the piece has its maximum context in this window.
  """
  is_context = token_offsets[:, 0] >= 0
  starts = np.argsort(-start_logits, kind="stable")[:n_best]
  ends = np.argsort(-end_logits, kind="stable")[:n_best]
  out = []
  for s in starts:
    if not is_context[s] or not max_context[s]:
      continue
    for e in ends:
      if not is_context[e] or e < s or e - s + 1 > max_answer_length:
        continue
      out.append((float(start_logits[s] + end_logits[e]), int(s), int(e)))
  return out


# BERT's run_squad splits the context into doc_tokens at exactly these characters and
# rebuilds answers from them joined by one space (`get_final_text`), so a run of them inside
# an answer becomes one space. Other Unicode spaces (e.g. U+00A0) stay, as in BERT.
_BERT_WHITESPACE = re.compile("[ \t\r\n\u202f]+")


def final_text(text: str, collapse_whitespace: bool = True) -> str:
  """An answer's text as BERT's get_final_text returns it (whitespace runs -> one space)."""
  return _BERT_WHITESPACE.sub(" ", text).strip(" ") if collapse_whitespace else text


def window_nbest(context: str, window: Mapping[str, np.ndarray], n_best: int,
                 max_answer_length: int, collapse_whitespace: bool = True
                 ) -> list[tuple[float, int, int, str]]:
  """The `n_best` best distinct answers of one window: (score, char start, char end, text).

  Only these can reach an example's n-best list: if a window ranks an answer below
  n_best other distinct texts, those texts also outrank it after pooling. So a window
  costs O(n_best) memory after decoding, whatever the number of windows.
  """
  offsets = np.asarray(window["token_offsets"])
  candidates = window_candidates(np.asarray(window["start_logits"]),
                                 np.asarray(window["end_logits"]), offsets,
                                 np.asarray(window["max_context"]), n_best, max_answer_length)
  candidates.sort(key=lambda c: -c[0])  # stable: ties keep start-major order
  out, seen = [], set()
  for score, s, e in candidates:
    char_start, char_end = int(offsets[s, 0]), int(offsets[e, 1])
    text = final_text(context[char_start:char_end], collapse_whitespace)
    if text in seen:
      continue
    seen.add(text)
    out.append((score, char_start, char_end, text))
    if len(out) == n_best:
      break
  return out


def merge_windows(per_window: Iterable[Sequence[tuple[float, int, int, str]]], n_best: int
                  ) -> list[dict[str, object]]:
  """Pools windows' n-best lists (by text, best score wins) into the example's n-best."""
  best_by_text: dict[str, tuple[float, int, int]] = {}
  for candidates in per_window:
    for score, char_start, char_end, text in candidates:
      if text not in best_by_text or score > best_by_text[text][0]:
        best_by_text[text] = (score, char_start, char_end)
  ranked = sorted(best_by_text.items(), key=lambda kv: -kv[1][0])[:n_best]
  if not ranked:
    return [{"text": "", "score": 0.0, "probability": 1.0, "start": -1, "end": -1}]
  probs = _softmax([v[0] for _, v in ranked])
  return [{"text": t, "score": v[0], "probability": p, "start": v[1], "end": v[2]}
          for (t, v), p in zip(ranked, probs)]


def decode_example(context: str, windows: Iterable[Mapping[str, np.ndarray]],
                   n_best: int = 20, max_answer_length: int = 30,
                   collapse_whitespace: bool = True) -> list[dict[str, object]]:
  """N-best answers of one example over all its windows, best first.

  Each window is a mapping with start_logits, end_logits, token_offsets, max_context.
  Returns [{"text", "score", "probability", "start", "end"}] (character span in `context`;
  `text` is that span with BERT's whitespace collapsing unless `collapse_whitespace` is
  False); [{"text": "", ...}] when no window yields a valid span (BERT's "empty" prediction).
  """
  return merge_windows((window_nbest(context, w, n_best, max_answer_length,
                                     collapse_whitespace) for w in windows), n_best)


def clean_answer(text: str) -> str:
  """BioBERT's answer clean-up (transform_n2b_factoid's `textrip`), reimplemented.

  Drops one trailing ',' '.' or ' '; unwraps an answer fully enclosed in one pair of
  brackets; empties an answer with an unbalanced bracket (it is cut mid-phrase).
  """
  if not text:
    return text
  if text[-1] in ",. ":
    return text[:-1]
  if len(text) > 2 and text[0] == "(" and text[-1] == ")" and \
      text.count("(") == 1 and text.count(")") == 1:
    return text[1:-1]
  if ("(" in text) != (")" in text):
    return ""
  return text


def rank_question_answers(nbest_lists: Iterable[Sequence[Mapping[str, object]]],
                          merge: str = "sum", top_k: int = 5, clean: bool = True,
                          max_chars: int = 100) -> list[tuple[str, float]]:
  """Pools the n-best lists of one question's contexts into ranked (answer, weight).

  Duplicates are matched case-insensitively; the surface form of the first (highest
  probability) occurrence is kept.
  """
  if merge not in ("sum", "max"):
    raise ValueError(f"merge must be 'sum' or 'max', got {merge!r}")
  pooled = [entry for nbest in nbest_lists for entry in nbest]
  pooled.sort(key=lambda entry: -float(entry["probability"]))
  weights: dict[str, float] = collections.OrderedDict()
  surface: dict[str, str] = {}
  for entry in pooled:
    text = clean_answer(str(entry["text"])) if clean else str(entry["text"])
    if not text or len(text) > max_chars:
      continue
    key, p = text.lower(), float(entry["probability"])
    if key not in weights:
      surface[key], weights[key] = text, p
    elif merge == "sum":
      weights[key] += p
    else:
      weights[key] = max(weights[key], p)
  ranked = sorted(weights.items(), key=lambda kv: -kv[1])[:top_k]
  return [(surface[k], w) for k, w in ranked]
