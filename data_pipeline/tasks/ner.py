"""NER input: CoNLL-like readers (IOB1/IOB2/IOBES -> IOB2), first-piece labels (-100 on the
rest), and windows where each word is owned by the window giving it most context.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import re
from typing import Any
from collections.abc import Sequence

import numpy as np

from data_pipeline import textio
from data_pipeline.errors import InputError

IGNORE_LABEL = -100
SCHEMES = ("iob2", "iob1", "iobes")
_TAG_RE = {"iob2": re.compile(r"^(O|[BI](-\S+)?)$"), "iob1": re.compile(r"^(O|[BI](-\S+)?)$"),
           "iobes": re.compile(r"^(O|[BIES](-\S+)?)$")}


@dataclasses.dataclass
class Sentence:
  words: list[str]
  tags: list[str]          # IOB2 after reading
  source: str = ""          # "file:line" of the first token


@dataclasses.dataclass
class ReadStats:
  sentences: int = 0
  tokens: int = 0
  repaired: int = 0                     # I- tags that followed nothing, rewritten as B-
  repaired_at: list[str] = dataclasses.field(default_factory=list)  # first few "file:line"


def _prefix_type(tag: str) -> tuple[str, str]:
  prefix, _, entity_type = tag.partition("-")
  return prefix, entity_type


def _join(prefix: str, entity_type: str) -> str:
  return f"{prefix}-{entity_type}" if entity_type else prefix


def iobes_to_iob2(tags: Sequence[str]) -> list[str]:
  """S-X -> B-X, E-X -> I-X (B, I, O unchanged)."""
  out = []
  for tag in tags:
    prefix, entity_type = _prefix_type(tag)
    out.append(_join({"S": "B", "E": "I"}.get(prefix, prefix), entity_type) if tag != "O"
               else "O")
  return out


def _starts_entity_in_iob2(prev: str, tag: str) -> bool:
  """True when `tag` is an I- that does not continue `prev` (an entity of the same type)."""
  prefix, entity_type = _prefix_type(tag)
  if prefix != "I":
    return False
  prev_prefix, prev_type = _prefix_type(prev)
  return prev == "O" or prev_prefix not in ("B", "I") or prev_type != entity_type


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
  """IOB1 (B- only between adjacent same-type entities) -> IOB2 (B- starts every entity)."""
  out, prev = [], "O"
  for tag in tags:
    new = _join("B", _prefix_type(tag)[1]) if _starts_entity_in_iob2(prev, tag) else tag
    out.append(new)
    prev = new
  return out


def _finish_sentence(path: str, words: list[str], tags: list[str], lines: list[int],
                     scheme: str, invalid_i: str, stats: ReadStats) -> Sentence:
  if scheme == "iobes":
    tags = iobes_to_iob2(tags)
  elif scheme == "iob1":
    tags = iob1_to_iob2(tags)
  prev = "O"
  for k, tag in enumerate(tags):
    if _starts_entity_in_iob2(prev, tag):
      where = f"{path}:{lines[k]}"
      if invalid_i == "fail":
        raise InputError(f"{where}: tag {tag!r} follows {prev!r}; in IOB2 an I- tag must "
                         "continue an entity of the same type (use invalid_i='repair' to "
                         "read it as B-)")
      tags[k] = _join("B", _prefix_type(tag)[1])
      stats.repaired += 1
      if len(stats.repaired_at) < 20:
        stats.repaired_at.append(where)
    prev = tags[k]
  stats.sentences += 1
  stats.tokens += len(words)
  return Sentence(words, tags, f"{path}:{lines[0]}")


def read_conll(path: str | pathlib.Path, *, scheme: str = "iob2", invalid_i: str = "repair",
               labels: Sequence[str] | None = None,
               max_sentences: int = 0) -> tuple[list[Sentence], ReadStats]:
  """Reads a token-per-line NER file into IOB2 sentences.

  Args:
    path: the file.
    scheme: the file's tag scheme, "iob2", "iob1" or "iobes".
    invalid_i: what to do with an IOB2 I- tag that follows nothing of its type: "repair"
      (read it as B-, counted in ReadStats and logged) or "fail".
    labels: if given, the allowed IOB2 tags (e.g. the training labels); others fail.
    max_sentences: stop after this many sentences (0 = all).

  Raises:
    ValueError: naming file:line for a line without exactly 2 columns, a tag that is not
      valid in `scheme` (or not in `labels`), or (invalid_i="fail") an I- after nothing.
  """
  if scheme not in SCHEMES:
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
  if invalid_i not in ("repair", "fail"):
    raise ValueError(f"invalid_i must be 'repair' or 'fail', got {invalid_i!r}")
  path = str(path)
  allowed = set(labels) if labels is not None else None
  tag_re = _TAG_RE[scheme]
  sentences: list[Sentence] = []
  stats = ReadStats()
  words: list[str] = []
  tags: list[str] = []
  lines: list[int] = []
  with textio.open_lines(path) as numbered_lines:  # InputError on bad UTF-8; BOM dropped
    for lineno, line in numbered_lines:
      if not line.strip():
        if words:
          sentences.append(_finish_sentence(path, words, tags, lines, scheme, invalid_i, stats))
          words, tags, lines = [], [], []
          if max_sentences and len(sentences) >= max_sentences:
            break
        continue
      cols = line.split("\t") if "\t" in line else line.split()
      if cols and cols[0] == "-DOCSTART-":
        continue
      if len(cols) != 2 or not cols[0]:
        raise InputError(f"{path}:{lineno}: expected 2 columns (token<TAB>tag), got "
                         f"{len(cols)}: {line!r}")
      word, tag = cols[0], cols[1].strip()
      if not tag_re.match(tag):
        expected = "O, B-TYPE, I-TYPE" + (", E-TYPE, S-TYPE" if scheme == "iobes" else "")
        raise InputError(f"{path}:{lineno}: unknown tag {tag!r} for scheme {scheme} "
                         f"(expected {expected})")
      words.append(word)
      tags.append(tag)
      lines.append(lineno)
  if words and not (max_sentences and len(sentences) >= max_sentences):
    sentences.append(_finish_sentence(path, words, tags, lines, scheme, invalid_i, stats))
  if allowed is not None:
    for s in sentences:
      for k, tag in enumerate(s.tags):
        if tag not in allowed:
          line = int(s.source.rsplit(":", 1)[1]) + k
          raise InputError(f"{path}:{line}: unknown tag {tag!r}; known labels: "
                           f"{sorted(allowed)}")
  if stats.repaired:
    logging.warning("%s: %d I- tags followed no entity of their type and were read as B- "
                    "(first at %s)", path, stats.repaired, ", ".join(stats.repaired_at[:3]))
  return sentences, stats


def label_list(sentences: Sequence[Sentence]) -> list[str]:
  """"O" then B-/I- for every entity type, sorted (B- and I- both present per type)."""
  types = sorted({_prefix_type(t)[1] for s in sentences for t in s.tags if t != "O"})
  return ["O"] + [_join(p, t) for t in types for p in ("B", "I")]


# ---- word -> piece alignment ----------------------------------------------------------------


def align_pieces(word_pieces: Sequence[Sequence[int]], unk_id: int
                 ) -> tuple[list[int], list[int]]:
  """Flattens per-word piece ids; returns (piece_ids, word_of_first_piece).

  word_of_first_piece[p] is the word index when piece p is a word's first piece, else -1.
  A word with no pieces becomes [UNK].
  """
  ids, first = [], []
  for w, pieces in enumerate(word_pieces):
    pieces = list(pieces) or [unk_id]
    ids.extend(pieces)
    first.extend([w] + [-1] * (len(pieces) - 1))
  return ids, first


def window_spans(num_pieces: int, content_len: int, stride: int) -> list[tuple[int, int]]:
  """[start, end) piece spans of at most content_len, starts every `stride`, covering all."""
  if content_len <= 0:
    raise ValueError(f"content length must be positive, got {content_len}")
  stride = max(1, min(stride, content_len))
  spans, start = [], 0
  while True:
    end = min(start + content_len, num_pieces)
    spans.append((start, end))
    if end >= num_pieces:
      return spans
    start += stride


def window_owner(spans: Sequence[tuple[int, int]], num_pieces: int) -> np.ndarray:
  """For every piece, the span where it has the most context: max of min(left, right)."""
  best = np.full((num_pieces,), -1, np.int64)
  best_score = np.full((num_pieces,), -1, np.int64)
  for k, (start, end) in enumerate(spans):
    pos = np.arange(start, end)
    score = np.minimum(pos - start, end - 1 - pos)
    better = score > best_score[start:end]
    best[start:end][better] = k
    best_score[start:end][better] = score[better]
  return best


def build_features(pieces_per_sentence: Sequence[tuple[list[int], list[int]]],
                   labels_per_sentence: Sequence[Sequence[int]] | None, *, cls_id: int,
                   sep_id: int, pad_id: int, max_seq_length: int,
                   stride: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """Windows of `[CLS] pieces [SEP]` padded to max_seq_length.

  Args:
    pieces_per_sentence: (piece_ids, word_of_first_piece) per sentence (`align_pieces`).
    labels_per_sentence: label id per *word*, or None (prediction only).
    stride: step between window starts, in pieces.

  Returns:
    features: input_ids, token_type_ids, attention_mask, labels ([N, L] int32; labels are
      -100 except on first pieces; all first pieces of a window are labelled, so overlapping
      words train in each window they appear in).
    extra: sentence_index [N] and word_index [N, L] (the word a position predicts when this
      window owns that word, else -1) for `merge_windows`.
  """
  content = max_seq_length - 2
  rows = {k: [] for k in ("input_ids", "labels", "word_index", "sentence_index", "length")}
  for s, (ids, first) in enumerate(pieces_per_sentence):
    spans = window_spans(len(ids), content, stride)
    owner = window_owner(spans, len(ids))
    word_labels = labels_per_sentence[s] if labels_per_sentence is not None else None
    for k, (start, end) in enumerate(spans):
      n = end - start
      input_ids = np.full((max_seq_length,), pad_id, np.int32)
      input_ids[0], input_ids[1:n + 1], input_ids[n + 1] = cls_id, ids[start:end], sep_id
      labels = np.full((max_seq_length,), IGNORE_LABEL, np.int32)
      word_index = np.full((max_seq_length,), -1, np.int32)
      for p in range(start, end):
        w = first[p]
        if w < 0:
          continue
        if word_labels is not None:
          labels[1 + p - start] = word_labels[w]
        if owner[p] == k:
          word_index[1 + p - start] = w
      rows["input_ids"].append(input_ids)
      rows["labels"].append(labels)
      rows["word_index"].append(word_index)
      rows["sentence_index"].append(s)
      rows["length"].append(n + 2)
  input_ids = np.stack(rows["input_ids"]) if rows["input_ids"] else \
      np.zeros((0, max_seq_length), np.int32)
  lengths = np.asarray(rows["length"], np.int32).reshape(-1, 1)
  features = {
      "input_ids": input_ids,
      "token_type_ids": np.zeros_like(input_ids),
      # From the window lengths, not `ids != pad_id`: [CLS] pieces [SEP] are attended even
      # if a vocabulary mapped some piece to the pad id.
      "attention_mask": (np.arange(max_seq_length)[None, :] < lengths).astype(np.int32),
      "labels": np.stack(rows["labels"]) if rows["labels"] else np.zeros_like(input_ids),
  }
  extra = {"sentence_index": np.asarray(rows["sentence_index"], np.int32),
           "word_index": np.stack(rows["word_index"]) if rows["word_index"] else
           np.zeros_like(input_ids)}
  return features, extra


def merge_windows(values: np.ndarray, extra: dict[str, np.ndarray],
                  num_words: Sequence[int]) -> list[np.ndarray]:
  """Per-sentence word values from per-position window values ([N, L, ...] -> [words, ...]).

  Raises:
    ValueError: some word was predicted by no window (cannot happen for features made by
      build_features; guards against mismatched inputs).
  """
  values = np.asarray(values)
  out = [np.zeros((n,) + values.shape[2:], values.dtype) for n in num_words]
  seen = [np.zeros((n,), bool) for n in num_words]
  rows, cols = np.nonzero(extra["word_index"] >= 0)
  for r, c in zip(rows, cols):
    s, w = extra["sentence_index"][r], extra["word_index"][r, c]
    out[s][w] = values[r, c]
    seen[s][w] = True
  for s, mask in enumerate(seen):
    if not mask.all():
      raise ValueError(f"sentence {s}: words {np.nonzero(~mask)[0].tolist()} were predicted "
                       "by no window")
  return out


def featurize_sentences(sentences: Sequence[Sentence], tokenizer: Any,
                        labels: Sequence[str], max_seq_length: int,
                        stride: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Sentences -> windows of first-piece-labelled features (`build_features`).

  Returns (features, extra); extra holds the window maps `merge_windows` needs and
  "labels" (the label names, id order).

  Raises:
    InputError: naming the sentence's file and line when a tag is not in `labels`.
  """
  label_to_id = {t: i for i, t in enumerate(labels)}
  word_pieces = tokenizer.encode_words([s.words for s in sentences])
  aligned = [align_pieces(p, tokenizer.unk_id) for p in word_pieces]
  word_labels = []
  for s in sentences:
    unknown = sorted({t for t in s.tags if t not in label_to_id})
    if unknown:
      raise InputError(f"{s.source}: tags {unknown} are not in the label set {list(labels)}")
    word_labels.append([label_to_id[t] for t in s.tags])
  features, extra = build_features(
      aligned, word_labels, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id,
      pad_id=tokenizer.pad_id, max_seq_length=max_seq_length, stride=stride)
  extra["labels"] = list(labels)
  return features, extra
