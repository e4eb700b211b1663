"""The `Tokenizer` interface over a SentencePiece model (BioBERT-Large's route)."""
from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import sentencepiece as spm

from data_pipeline.tokenization.base import Span, Tokenizer

from biobert_jax import fs

if TYPE_CHECKING:
  from data_pipeline._tf import tf

WORD_MARKER = "\u2581"  # "▁"


class SentencePieceTokenizer(Tokenizer):
  """SentencePiece model with BERT's special tokens ([PAD] [UNK] [CLS] [SEP] [MASK])."""

  def __init__(self, model_path: str | pathlib.Path, lowercase: bool = False,
               extra_tokens: Sequence[str] = ()):
    self._model_proto = fs.read_bytes(model_path)
    self._sp = spm.SentencePieceProcessor(model_proto=self._model_proto)
    base_vocab = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
    super().__init__(base_vocab, lowercase, extra_tokens, str(model_path))
    self._starts_word = np.array([p.startswith(WORD_MARKER) for p in base_vocab])
    self._graph = None

  def _prepare(self, text: str) -> str:
    return text.lower() if self.lowercase else text

  def _encode_batch(self, texts: list[str]) -> list[list[int]]:
    return self._sp.encode([self._prepare(t) for t in texts])

  def _encode_segment_with_offsets(self, text: str, base: int) -> tuple[list[int], list[Span]]:
    prepared = self._prepare(text)
    proto = self._sp.encode(prepared, return_type="proto")
    ids = [p.id for p in proto.pieces]
    if len(prepared) != len(text):  # str.lower() changed the length (e.g. "İ"): no alignment
      return ids, [(base, base + len(text))] * len(ids)
    # SentencePiece reports byte offsets into the (un-normalised) input.
    if prepared.isascii():
      char_of_byte = None
    else:
      char_of_byte = np.repeat(np.arange(len(prepared) + 1),
                               [len(c.encode("utf-8")) for c in prepared] + [1])
    spans = []
    for p in proto.pieces:
      begin, end = p.begin, p.end
      if char_of_byte is not None:
        begin, end = int(char_of_byte[begin]), int(char_of_byte[end])
      spans.append((base + begin, base + end))
    return ids, spans

  def _tokenize_segments_tf(self, strings: tf.Tensor) -> tf.RaggedTensor:
    # TensorFlow only in the in-graph face (see tokenization.base).
    from data_pipeline.tokenization import ingraph  # noqa: PLC0415
    tf, tf_text = ingraph.tf, ingraph.tf_text
    if self._graph is None:
      # The op emits int32 or strings only; ids are cast to int64 below. Built eagerly
      # even when first called while tracing a tf.data map.
      with tf.init_scope():
        self._graph = tf_text.SentencepieceTokenizer(model=self._model_proto,
                                                     out_type=tf.int32)
    if self.lowercase:
      strings = tf.strings.lower(strings, encoding="utf-8")
    pieces = self._graph.tokenize(strings)  # [S, (pieces)]
    ids = tf.cast(pieces.values, tf.int64)
    starts_word = tf.gather(tf.constant(self._starts_word), ids)
    # The first piece of a segment starts a word even without "▁" (e.g. an [UNK]).
    row_firsts = tf.boolean_mask(pieces.row_starts(), pieces.row_lengths() > 0)
    first_in_row = tf.scatter_nd(
        tf.expand_dims(row_firsts, 1), tf.ones_like(row_firsts, dtype=tf.bool),
        tf.shape(ids, out_type=tf.int64))
    word_starts = tf.where(starts_word | first_in_row)[:, 0]
    words = tf.RaggedTensor.from_row_starts(ids, word_starts)
    word_row = tf.gather(pieces.value_rowids(), word_starts)
    return tf.RaggedTensor.from_value_rowids(words, word_row, nrows=pieces.nrows())

  def decode(self, ids: Sequence[int]) -> str:
    """SentencePiece's own decoding (unknown pieces read " ⁇ "), skipping [PAD]."""
    parts: list[str] = []
    run: list[int] = []
    for i in list(ids) + [None]:
      if i is None or i >= self._first_extra_id:
        if run:
          parts.append(self._sp.decode(run))
          run = []
        if i is not None:
          parts.append(self.vocab[i])
      elif i != self.pad_id:
        run.append(int(i))
    return " ".join(p for p in parts if p)
