"""Relation extraction input in BioBERT's sentence format (both TSV layouts, detected per
file; duplicates kept as BioBERT), and its featurisation.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import random
from typing import Any
from collections.abc import Iterable, Sequence

import numpy as np

from biobert_jax import fs
from data_pipeline import textio
from data_pipeline.errors import InputError

# Anonymisation tokens per corpus, in entity_positions order ([0] = first, [1] = second).
GAD_MARKERS = ("@GENE$", "@DISEASE$")
CHEMPROT_MARKERS = ("@CHEMICAL$", "@GENE$")
# BLUE replaces a chemical and a gene whose mentions overlap by one token that stands
# for both (see data_pipeline/tasks/chemprot.py); it fills both entity positions.
CHEMPROT_OVERLAP_MARKER = "@CHEM-GENE$"
CHEMPROT_LABELS = ("false", "CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9")
CHEMPROT_POSITIVE = CHEMPROT_LABELS[1:]


@dataclasses.dataclass(frozen=True)
class RelationExample:
  """One candidate pair: `text` with anonymised mentions, and its label (a string)."""
  guid: str
  text: str
  label: str


def _open_lines(path: pathlib.Path) -> list[str]:
  # Lines end at "\n" only: str.splitlines also cut sentences at U+2028, U+0085, "\f".
  return [line for _, line in textio.iter_lines(path)]


def read_relation_tsv(path: str | os.PathLike,
                      allowed_labels: Iterable[str] | None = None) -> list[RelationExample]:
  """Reads one BioBERT-format RE file (layout detected from its first line).

  Raises:
    InputError naming `path:line` for a row with the wrong number of columns, an empty
    sentence, an empty label or a label outside `allowed_labels`.
  """
  path = fs.path(path)
  lines = _open_lines(path)
  allowed = None if allowed_labels is None else set(allowed_labels)
  has_header = bool(lines) and [c.strip().lower() for c in lines[0].split("\t")] == [
      "index", "sentence", "label"]
  num_columns = 3 if has_header else (len(lines[0].split("\t")) if lines else 2)
  if num_columns not in (2, 3):
    raise InputError(f"{path}:1: expected 2 columns (sentence, label) or 3 (index, "
                     f"sentence, label), got {num_columns}")
  examples = []
  for lineno, line in enumerate(lines, start=1):
    if has_header and lineno == 1:
      continue
    if not line.strip():
      continue  # a trailing blank line is not a row
    fields = line.split("\t")
    if len(fields) != num_columns:
      raise InputError(f"{path}:{lineno}: expected {num_columns} tab-separated columns "
                       f"like the first row, got {len(fields)}: {line[:80]!r}")
    guid = fields[0] if num_columns == 3 else f"{path.stem}-{lineno}"
    text, label = fields[-2].strip(), fields[-1].strip()
    if not text:
      raise InputError(f"{path}:{lineno}: empty sentence")
    if not label:
      raise InputError(f"{path}:{lineno}: empty label")
    if allowed is not None and label not in allowed:
      raise InputError(f"{path}:{lineno}: label {label!r} is not one of {sorted(allowed)}")
    examples.append(RelationExample(guid=guid, text=text, label=label))
  return examples


def detect_dataset(data_dir: str | os.PathLike) -> str:
  """"chemprot" for a raw ChemProt release (data_dir or data_dir/raw holds
  chemprot_training/), "biobert_tsv" for a directory with train.tsv/test.tsv."""
  d = fs.path(data_dir)
  if chemprot_raw_dir(d) is not None:
    return "chemprot"
  if (d / "train.tsv").exists() or (d / "test.tsv").exists():
    return "biobert_tsv"
  raise FileNotFoundError(
      f"{d}: neither a raw ChemProt release (chemprot_training/) nor BioBERT RE TSVs "
      f"(train.tsv, test.tsv)")


def chemprot_raw_dir(data_dir: str | os.PathLike) -> pathlib.Path | None:
  d = fs.path(data_dir)
  for candidate in (d, d / "raw"):
    if (candidate / "chemprot_training").is_dir():
      return candidate
  return None


def read_biobert_splits(data_dir: str | os.PathLike, allowed_labels: Iterable[str] | None = None,
                        ) -> dict[str, list[RelationExample]]:
  """{"train", "dev"?, "test"?} from <data_dir>/{train,dev,test}.tsv (those present).

  allowed_labels: a label outside it is an InputError naming the file and line (instead of
  silently becoming one more class, which also turns GAD's binary F1 into micro F1).
  """
  d = fs.path(data_dir)
  splits = {}
  for split in ("train", "dev", "test"):
    if (d / f"{split}.tsv").exists():
      splits[split] = read_relation_tsv(d / f"{split}.tsv", allowed_labels)
  if "train" not in splits:
    raise FileNotFoundError(f"{d}: no train.tsv")
  return splits


def carve_dev(examples: Sequence[RelationExample], fraction: float, seed: int
              ) -> tuple[list[RelationExample], list[RelationExample]]:
  """Splits (train, dev) by a seeded shuffle of *distinct sentences*, so duplicated rows
  never end up on both sides (GAD has many)."""
  texts = sorted({e.text for e in examples})
  random.Random(seed).shuffle(texts)
  dev_texts = set(texts[:int(round(len(texts) * fraction))])
  train = [e for e in examples if e.text not in dev_texts]
  dev = [e for e in examples if e.text in dev_texts]
  return train, dev


def expected_labels(markers: Sequence[str]) -> tuple[str, ...] | None:
  """The label set a corpus with these anonymisation markers uses (None: unknown corpus).

  GAD / EU-ADR (@GENE$, @DISEASE$): "0"/"1"; ChemProt in BLUE's TSVs (@CHEMICAL$, @GENE$):
  "false" and the five evaluated CPR groups.
  """
  if set(markers) == set(GAD_MARKERS):
    return ("0", "1")
  if set(markers) == set(CHEMPROT_MARKERS):
    return CHEMPROT_LABELS
  return None


def markers_for_labels(labels: Iterable[str]) -> tuple[str, ...]:
  """The anonymisation markers of a corpus, guessed from its label set."""
  labels = set(labels)
  if labels & set(CHEMPROT_POSITIVE) or "false" in labels:
    return CHEMPROT_MARKERS
  return GAD_MARKERS


def _window(positions: Sequence[int], length: int, budget: int) -> int:
  """Start of a `budget`-piece window that keeps the markers when they can fit.

  BioBERT simply truncates the tail; a marker cut off that way leaves entity_start pooling
  nothing to read, so the window slides right just enough to keep both markers.
  """
  if length <= budget or not positions or max(positions) < budget:
    return 0
  return max(0, min(min(positions), max(positions) - budget + 1))


MARKER_MODES = ("new_tokens", "word_pieces")


def _marker_pieces(tokenizer: Any, marker: str, mode: str) -> list[int]:
  """The piece ids one marker becomes; one new token, or BioBERT's ordinary pieces."""
  ids = tokenizer.encode([marker])[0]
  if mode == "new_tokens" and (len(ids) != 1 or ids[0] == tokenizer.unk_id):
    raise ValueError(f"marker {marker!r} is not a single token of the tokenizer; load it "
                     f"with extra_tokens={[marker]} or use re.markers='word_pieces'")
  if not ids or tokenizer.unk_id in ids:
    raise ValueError(f"marker {marker!r} tokenizes to {ids} (unknown pieces): the vocabulary "
                     "cannot represent it")
  return ids


def _find(pieces: Sequence[int], needle: Sequence[int]) -> int:
  """First index where `needle` occurs in `pieces` as a contiguous run, else -1."""
  n = len(needle)
  first = needle[0]
  for p, t in enumerate(pieces):
    if t == first and list(pieces[p:p + n]) == list(needle):
      return p
  return -1


def featurize_relations(examples: Sequence[RelationExample], tokenizer: Any,
                        label_to_id: dict[str, int], max_seq_length: int,
                        markers: Sequence[str],
                        overlap_marker: str | None = None,
                        marker_mode: str = "new_tokens") -> tuple[dict[str, np.ndarray], dict]:
  """`[CLS] sentence [SEP]` features for a sentence classifier.

  Returns (features, stats): features `input_ids`, `token_type_ids`, `attention_mask`
  (int32 [N, max_seq_length]), `label_ids` (int32 [N]; -100 for a label not in
  `label_to_id`, which the loss ignores) and `entity_positions` (int32 [N, 2]: the
  positions of the two markers (markers[0], markers[1]); `overlap_marker` fills both;
  0 = [CLS] when a marker is missing or cut off).

  marker_mode: "new_tokens" (each marker is one added vocabulary row) or "word_pieces"
  (BioBERT's input: `@GENE$` is split like any text, e.g. `@ gene $`; the position is the
  marker's first piece).

  stats: `truncated` rows; rows whose text lacks a marker (`rows_missing_marker`) or whose
  marker the window cut off (`rows_marker_cut`), with the first few guids of each.
  """
  if marker_mode not in MARKER_MODES:
    raise ValueError(f"marker_mode={marker_mode!r}; valid: {', '.join(MARKER_MODES)}")
  marker_ids = [_marker_pieces(tokenizer, m, marker_mode) for m in markers]
  overlap_ids = _marker_pieces(tokenizer, overlap_marker, marker_mode) if overlap_marker \
      else None
  budget = max_seq_length - 2
  n = len(examples)
  input_ids = np.full((n, max_seq_length), tokenizer.pad_id, np.int32)
  attention_mask = np.zeros((n, max_seq_length), np.int32)
  entity_positions = np.zeros((n, 2), np.int32)
  label_ids = np.array([label_to_id.get(e.label, -100) for e in examples], np.int32)
  stats: dict[str, Any] = {"truncated": 0, "rows_missing_marker": 0, "rows_marker_cut": 0,
                           "missing_marker_guids": [], "marker_cut_guids": []}
  encoded = tokenizer.encode([e.text for e in examples])
  for i, pieces in enumerate(encoded):
    found = []
    for needle in marker_ids:
      hits = [p for p in (_find(pieces, needle),
                          _find(pieces, overlap_ids) if overlap_ids else -1) if p >= 0]
      found.append(min(hits) if hits else -1)
    start = _window([p for p in found if p >= 0], len(pieces), budget)
    window = pieces[start:start + budget]
    stats["truncated"] += int(len(pieces) > budget)
    ids = [tokenizer.cls_id, *window, tokenizer.sep_id]
    input_ids[i, :len(ids)] = ids
    attention_mask[i, :len(ids)] = 1
    cut = False
    for k, p in enumerate(found):
      if 0 <= p - start < budget:
        entity_positions[i, k] = p - start + 1  # +1 for [CLS]
      elif p >= 0:
        cut = True
    if -1 in found:
      stats["rows_missing_marker"] += 1
      if len(stats["missing_marker_guids"]) < 10:
        stats["missing_marker_guids"].append(examples[i].guid)
    elif cut:
      stats["rows_marker_cut"] += 1
      if len(stats["marker_cut_guids"]) < 10:
        stats["marker_cut_guids"].append(examples[i].guid)
  features = {"input_ids": input_ids, "token_type_ids": np.zeros_like(input_ids),
              "attention_mask": attention_mask, "label_ids": label_ids,
              "entity_positions": entity_positions}
  return features, stats
