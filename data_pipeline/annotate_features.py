"""Annotation features: sentences with offsets -> BERT words -> windows -> model inputs."""
from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Sequence

import numpy as np

from data_pipeline.corpora.sentences import sentence_spans
from data_pipeline.tasks import ner as ner_data


@dataclasses.dataclass
class SentenceBlock:
  """The sentences of a block of documents: absolute [start, end) spans per document."""
  doc_of_sentence: np.ndarray  # [S] index of the document within the block
  spans: np.ndarray            # [S, 2] character span in its document's text
  texts: list[str]


def split_block(docs: Sequence[Any]) -> SentenceBlock:
  """Sentences of `docs` (objects with `.text` and `.segments`) with their spans."""
  doc_of, spans, texts = [], [], []
  for d, doc in enumerate(docs):
    for seg_start, seg_end in doc.segments:
      for start, end in sentence_spans(doc.text[seg_start:seg_end]):
        doc_of.append(d)
        spans.append((seg_start + start, seg_start + end))
        texts.append(doc.text[seg_start + start:seg_start + end])
  return SentenceBlock(np.asarray(doc_of, np.int64),
                       np.asarray(spans, np.int64).reshape(-1, 2), texts)


@dataclasses.dataclass
class Windows:
  """Model inputs of one block for one tokenizer.

  ids[r]: int32 `[CLS] pieces [SEP]` of window r; sentence[r]: its sentence;
  positions[r] / words[r]: the window positions that predict words, and those words'
  indices in the sentence; word_spans[s]: [W, 2] character spans of sentence s's words,
  relative to the sentence.
  """
  ids: list[np.ndarray]
  sentence: np.ndarray
  positions: list[np.ndarray]
  words: list[np.ndarray]
  word_spans: list[np.ndarray]

  @property
  def num_tokens(self) -> int:
    return int(sum(len(w) for w in self.ids))


def continuation_table(tokenizer: Any) -> np.ndarray:
  """bool [vocab]: the piece continues a word ("##..."); looked up per piece id."""
  return np.asarray([p.startswith("##") for p in tokenizer.vocab], bool)


def make_windows(tokenizer: Any, texts: Sequence[str], max_seq_length: int, stride: int,
                 continuation: np.ndarray) -> Windows:
  """Tokenises `texts` (sentences) into words and windows; see `Windows`."""
  content = max_seq_length - 2
  cls, sep = np.int32(tokenizer.cls_id), np.int32(tokenizer.sep_id)
  out = Windows([], [], [], [], [])
  sentence_of = []
  for s, (ids, spans) in enumerate(tokenizer.encode_with_offsets(list(texts))):
    if not ids:
      out.word_spans.append(np.zeros((0, 2), np.int64))
      continue
    ids = np.asarray(ids, np.int32)
    spans = np.asarray(spans, np.int64).reshape(-1, 2)
    starts = ~continuation[ids]
    starts[0] = True
    first = np.flatnonzero(starts)
    # A word ends where its furthest piece ends (pieces of one word are contiguous).
    out.word_spans.append(np.stack([spans[first, 0],
                                    np.maximum.reduceat(spans[:, 1], first)], axis=1))
    if len(ids) <= content:
      out.ids.append(np.concatenate([[cls], ids, [sep]]).astype(np.int32))
      out.positions.append(first + 1)
      out.words.append(np.arange(len(first)))
      sentence_of.append(s)
      continue
    word_of_piece = np.cumsum(starts) - 1
    windows = ner_data.window_spans(len(ids), content, stride)
    owner = ner_data.window_owner(windows, len(ids))
    for k, (a, b) in enumerate(windows):
      mine = first[(first >= a) & (first < b) & (owner[first] == k)]
      out.ids.append(np.concatenate([[cls], ids[a:b], [sep]]).astype(np.int32))
      out.positions.append(mine - a + 1)
      out.words.append(word_of_piece[mine])
      sentence_of.append(s)
  out.sentence = np.asarray(sentence_of, np.int64)
  return out


def window_features(windows: Windows, max_seq_length: int, pad_id: int
                    ) -> dict[str, np.ndarray]:
  """The windows as model inputs: [N, max_seq_length] int32 arrays, padded after each
  window's pieces (batching and trimming are the predictor's)."""
  lengths = np.asarray([len(w) for w in windows.ids], np.int64)
  ids = np.full((len(lengths), max_seq_length), pad_id, np.int32)
  mask = (np.arange(max_seq_length)[None] < lengths[:, None]).astype(np.int32)
  if len(lengths):
    ids[mask.astype(bool)] = np.concatenate(windows.ids)
  return {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": mask}
