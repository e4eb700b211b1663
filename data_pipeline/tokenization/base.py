"""The Tokenizer interface, vocab/text readers and the WordPiece tokenizer; TensorFlow is
imported only by the in-graph face.
"""
from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from data_pipeline import textio
from data_pipeline.tokenization.wordpiece import WordPieceEncoder

if TYPE_CHECKING:
  from data_pipeline._tf import tf

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)

Span = tuple[int, int]


def read_text_lines(path: str | pathlib.Path, errors: str = "strict") -> Iterator[str]:
  """The lines of a UTF-8 text file without their line ending (`textio.iter_lines`:
  "\n"-only line ends, a leading BOM dropped, `errors` "strict" | "replace")."""
  for _, line in textio.iter_lines(path, errors=errors):
    yield line


def read_vocab(path: str | pathlib.Path) -> list[str]:
  """The pieces of a WordPiece vocab file, one per line; id = line number (0-based)."""
  vocab = [line.strip() for line in read_text_lines(path)]
  while vocab and not vocab[-1]:  # tolerate trailing blank lines
    vocab.pop()
  seen: dict[str, int] = {}
  for i, piece in enumerate(vocab):
    if piece in seen:
      raise ValueError(f"{path}:{i + 1}: duplicate vocab entry {piece!r} (first on line "
                       f"{seen[piece] + 1})")
    seen[piece] = i
  return vocab


class Tokenizer:
  """The interface every tokenizer offers; subclasses tokenise extra-token-free segments."""

  def __init__(self, base_vocab: Sequence[str], lowercase: bool,
               extra_tokens: Sequence[str], source: str):
    self.lowercase = lowercase
    self.extra_tokens = tuple(extra_tokens)
    self.vocab: list[str] = list(base_vocab) + list(self.extra_tokens)
    self._ids = {piece: i for i, piece in enumerate(self.vocab)}
    missing = [t for t in SPECIAL_TOKENS if t not in self._ids]
    if missing:
      raise ValueError(f"{source}: vocabulary lacks the special tokens {missing}")
    clash = [t for t in self.extra_tokens if t in base_vocab]
    if clash or len(set(self.extra_tokens)) != len(self.extra_tokens):
      raise ValueError(f"extra_tokens must be new and distinct; {source} has {clash}")
    self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
        self._ids[t] for t in SPECIAL_TOKENS)
    self._first_extra_id = len(base_vocab)
    self._extra_re = None
    if self.extra_tokens:
      # Longest first, so that alternation picks the longest match like HF added tokens.
      pattern = "|".join(re.escape(t) for t in sorted(self.extra_tokens, key=len, reverse=True))
      self._extra_re = re.compile(f"({pattern})")
      self._extra_re2 = pattern

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  # --- the Python face ----------------------------------------------------------------

  def encode(self, texts: Sequence[str]) -> list[list[int]]:
    """Piece ids per text, without special tokens."""
    if isinstance(texts, str):
      raise TypeError("encode takes a list of texts, not one str")
    if self._extra_re is None:
      return self._encode_batch(list(texts))
    return [ids for ids, _ in self.encode_with_offsets(texts)]

  def encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list[Span]]]:
    """Piece ids and each piece's [start, end) character span in the original text."""
    if isinstance(texts, str):
      raise TypeError("encode_with_offsets takes a list of texts, not one str")
    if self._extra_re is None:
      return [self._encode_segment_with_offsets(t, 0) for t in texts]
    out = []
    for text in texts:
      ids: list[int] = []
      spans: list[Span] = []
      position = 0
      for k, segment in enumerate(self._extra_re.split(text)):
        if k % 2:  # re.split puts the captured extra tokens at odd positions
          ids.append(self._ids[segment])
          spans.append((position, position + len(segment)))
        elif segment:
          seg_ids, seg_spans = self._encode_segment_with_offsets(segment, position)
          ids.extend(seg_ids)
          spans.extend(seg_spans)
        position += len(segment)
      out.append((ids, spans))
    return out

  def encode_words(self, words_per_text: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Piece ids per pre-split word (e.g. NER tokens), as BERT's `tokenize(word)` per word.

    A word that yields no pieces (empty, whitespace, control characters only) gives `[]`;
    callers must handle it (e.g. drop the word, or label it with its neighbour).
    """
    flat = [w for words in words_per_text for w in words]
    flat_ids = iter(self.encode(flat))
    return [[next(flat_ids) for _ in words] for words in words_per_text]

  def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
    return [self.vocab[i] for i in ids]

  def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
    return [self._ids.get(t, self.unk_id) for t in tokens]

  def decode(self, ids: Sequence[int]) -> str:
    """Text from ids, skipping [PAD] (subclasses define how pieces join)."""
    return self._join_pieces([self.vocab[i] for i in ids if i != self.pad_id])

  # --- the in-graph face --------------------------------------------------------------

  def tokenize_tf(self, strings) -> tf.RaggedTensor:
    """`[N]` strings -> `[N, (words), (pieces)]` int64 ids; graph-safe (tf.data.map).

    A scalar string gives `[(words), (pieces)]`. Words are the units of whole-word
    masking; an extra token is one word of one piece.
    """
    from data_pipeline.tokenization import ingraph  # noqa: PLC0415 (TensorFlow: see top)
    tf = ingraph.tf
    strings = tf.convert_to_tensor(strings, dtype=tf.string)
    if strings.shape.rank == 0:
      return self.tokenize_tf(tf.expand_dims(strings, 0))[0]
    if self._extra_re is None:
      return self._tokenize_segments_tf(strings)
    segments = ingraph.tf_text.regex_split(strings, self._extra_re2, self._extra_re2)
    flat = segments.flat_values
    pieces = self._tokenize_segments_tf(flat)
    pieces = ingraph.replace_extra_segments(
        pieces, flat, self.extra_tokens, self._first_extra_id)
    return tf.RaggedTensor.from_row_splits(pieces, segments.row_splits).merge_dims(1, 2)

  # --- what a backend provides --------------------------------------------------------

  def _encode_batch(self, texts: list[str]) -> list[list[int]]:
    raise NotImplementedError

  def _encode_segment_with_offsets(self, text: str, base: int) -> tuple[list[int], list[Span]]:
    raise NotImplementedError

  def _tokenize_segments_tf(self, strings: tf.Tensor) -> tf.RaggedTensor:
    raise NotImplementedError

  def _join_pieces(self, pieces: list[str]) -> str:
    raise NotImplementedError


class WordPieceTokenizer(Tokenizer):
  """BERT's tokenizer (BasicTokenizer + WordPiece) over a `vocab.txt`."""

  def __init__(self, vocab: Sequence[str], lowercase: bool = False,
               extra_tokens: Sequence[str] = (), source: str = "<vocab>"):
    super().__init__(vocab, lowercase, extra_tokens, source)
    self._encoder = WordPieceEncoder(vocab, lowercase, UNK)
    self._graph = None  # built on first use: it scans all code points (~1 s)
    self._base_vocab = list(vocab)

  def _encode_batch(self, texts: list[str]) -> list[list[int]]:
    return [self._encoder.encode(t) for t in texts]

  def _encode_segment_with_offsets(self, text: str, base: int) -> tuple[list[int], list[Span]]:
    return self._encoder.encode_with_offsets(text, base)

  def _tokenize_segments_tf(self, strings: tf.Tensor) -> tf.RaggedTensor:
    if self._graph is None:
      from data_pipeline.tokenization import ingraph  # noqa: PLC0415 (TensorFlow: see top)
      with ingraph.tf.init_scope():  # eager even when first called while tracing a tf.data map
        self._graph = ingraph.WordPieceGraph(self._base_vocab, self.lowercase, UNK)
    return self._graph(strings)

  def _join_pieces(self, pieces: list[str]) -> str:
    return " ".join(pieces).replace(" ##", "").strip()
