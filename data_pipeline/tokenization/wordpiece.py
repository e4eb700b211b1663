"""Pure-Python BERT tokenisation (BasicTokenizer + greedy WordPiece) with character offsets
into the original string, cached per whitespace chunk.
"""
import re
import unicodedata
from collections.abc import Sequence

from data_pipeline.tokenization import chars

# Original BERT's max_input_chars_per_word (tokenization.py: 200); longer words become
# [UNK]. HF tokenizers / transformers default to 100, so words of 101-200 characters (long
# chemical names, sequences) are pieces here and [UNK] there.
MAX_CHARS_PER_WORD = 200
_CACHE_LIMIT = 1_000_000  # chunks; cleared when full (memory stays bounded on huge corpora).

Piece = tuple[int, int, int]  # (id, start, end), offsets relative to the chunk.


def _strip_accents(text: str) -> str:
  """BERT `_run_strip_accents`: NFD, then drop nonspacing marks (Mn)."""
  return "".join(c for c in unicodedata.normalize("NFD", text)
                 if unicodedata.category(c) != "Mn")


class WordPieceEncoder:
  """Encodes text into WordPiece ids with offsets; the Python face of `Tokenizer`."""

  def __init__(self, vocab: Sequence[str], lowercase: bool, unk_token: str = "[UNK]"):
    self._ids = {piece: i for i, piece in enumerate(vocab)}
    if unk_token not in self._ids:
      raise ValueError(f"vocabulary has no {unk_token!r} entry")
    self._unk_id = self._ids[unk_token]
    self._lowercase = lowercase
    self._max_piece_chars = max(len(p) for p in vocab)
    self._chunk_re = re.compile(chars.python_non_whitespace_run())
    self._cache: dict[str, tuple[Piece, ...]] = {}

  # --- public -------------------------------------------------------------------------

  def encode(self, text: str) -> list[int]:
    """Piece ids of `text` (no special tokens)."""
    ids: list[int] = []
    for chunk in self._chunk_re.findall(text):
      pieces = self._cache.get(chunk)
      if pieces is None:
        pieces = self._encode_chunk_cached(chunk)
      ids.extend([p[0] for p in pieces])
    return ids

  def encode_with_offsets(self, text: str,
                          base: int = 0) -> tuple[list[int], list[tuple[int, int]]]:
    """Piece ids and their [start, end) character spans in `text` (shifted by `base`)."""
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    for match in self._chunk_re.finditer(text):
      chunk = match.group()
      pieces = self._cache.get(chunk)
      if pieces is None:
        pieces = self._encode_chunk_cached(chunk)
      offset = match.start() + base
      for piece_id, start, end in pieces:
        ids.append(piece_id)
        spans.append((start + offset, end + offset))
    return ids, spans

  # --- one whitespace-delimited chunk -------------------------------------------------

  def _encode_chunk_cached(self, chunk: str) -> tuple[Piece, ...]:
    if len(self._cache) >= _CACHE_LIMIT:
      self._cache.clear()
    pieces = tuple(self._encode_chunk(chunk))
    self._cache[chunk] = pieces
    return pieces

  def _encode_chunk(self, chunk: str) -> list[Piece]:
    # _clean_text, then _tokenize_chinese_chars: CJK chars become tokens of their own.
    tokens: list[list[int]] = [[]]  # chunk positions of the kept characters, per token
    for i, c in enumerate(chunk):
      kind = chars.char_kind(c)
      if kind == chars.REMOVED:
        continue
      if kind == chars.CJK:
        tokens.append([i])
        tokens.append([])
      else:
        tokens[-1].append(i)
    out: list[Piece] = []
    for positions in tokens:
      if positions:
        out.extend(self._encode_token(chunk, positions))
    return out

  def _normalise(self, chunk: str, positions: list[int]) -> tuple[str, list[int], list[int]]:
    """The token's normalised text and, per normalised char, its [start, end) in the chunk."""
    raw = "".join(chunk[i] for i in positions)
    if not self._lowercase:
      return raw, positions, [i + 1 for i in positions]
    text = _strip_accents(raw.lower())
    per_char = [_strip_accents(chunk[i].lower()) for i in positions]
    if sum(map(len, per_char)) == len(text):
      # Char-by-char normalisation lines up with the token's (it differs only in context
      # rules such as the Greek final sigma, which never changes the length).
      starts = [i for i, part in zip(positions, per_char) for _ in part]
      return text, starts, [i + 1 for i in starts]
    # Cannot align (e.g. reordered combining marks): every char spans the whole token.
    return text, [positions[0]] * len(text), [positions[-1] + 1] * len(text)

  def _encode_token(self, chunk: str, positions: list[int]) -> list[Piece]:
    text, starts, ends = self._normalise(chunk, positions)
    out: list[Piece] = []
    # _run_split_on_punc: punctuation chars become words of their own.
    word_start = 0
    for k, c in enumerate(text + " "):
      if k == len(text) or chars.char_kind(c) == chars.PUNCTUATION:
        if word_start < k:
          out.extend(self._wordpiece(text[word_start:k], starts[word_start:k],
                                     ends[word_start:k]))
        if k < len(text):
          out.extend(self._wordpiece(c, starts[k:k + 1], ends[k:k + 1]))
        word_start = k + 1
    return out

  def _wordpiece(self, word: str, starts: list[int], ends: list[int]) -> list[Piece]:
    """Greedy longest-match-first WordPiece of one word; [UNK] for the whole word on failure."""
    whole = [(self._unk_id, starts[0], ends[-1])]
    if len(word) > MAX_CHARS_PER_WORD:
      return whole
    pieces: list[Piece] = []
    start = 0
    while start < len(word):
      end = min(len(word), start + self._max_piece_chars)
      piece_id = None
      while start < end:
        sub = word[start:end] if start == 0 else "##" + word[start:end]
        piece_id = self._ids.get(sub)
        if piece_id is not None:
          break
        end -= 1
      if piece_id is None:
        return whole
      pieces.append((piece_id, starts[start], ends[end - 1]))
      start = end
    return pieces


class BasicTokenizer:
  """BERT's BasicTokenizer alone: text -> normalised words (what WordPiece then splits).

  Used to count words for vocabulary training, so that the vocabulary is learnt over
  exactly the words the tokenizer will later see.
  """

  def __init__(self, lowercase: bool):
    self._lowercase = lowercase
    self._chunk_re = re.compile(chars.python_non_whitespace_run())
    self._cache: dict[str, tuple[str, ...]] = {}

  def __call__(self, text: str) -> list[str]:
    words: list[str] = []
    for chunk in self._chunk_re.findall(text):
      chunk_words = self._cache.get(chunk)
      if chunk_words is None:
        if len(self._cache) >= _CACHE_LIMIT:
          self._cache.clear()
        chunk_words = self._cache[chunk] = tuple(self._split_chunk(chunk))
      words.extend(chunk_words)
    return words

  def _split_chunk(self, chunk: str) -> list[str]:
    tokens = [""]
    for c in chunk:
      kind = chars.char_kind(c)
      if kind == chars.REMOVED:
        continue
      if kind == chars.CJK:
        tokens += [c, ""]
      else:
        tokens[-1] += c
    words: list[str] = []
    for token in tokens:
      if self._lowercase:
        token = _strip_accents(token.lower())
      current = ""
      for c in token:
        if chars.char_kind(c) == chars.PUNCTUATION:
          words += [current, c] if current else [c]
          current = ""
        else:
          current += c
      if current:
        words.append(current)
    return words
