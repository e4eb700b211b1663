"""In-graph BERT tokenisation (the tf.data face) from tensorflow-text ops, without tf-text's
BERT normaliser (its lowercasing differs from BERT's).
"""
from collections.abc import Sequence

import tensorflow_text as tf_text

from data_pipeline.tokenization import chars
from data_pipeline._tf import tf
from data_pipeline.tokenization.wordpiece import MAX_CHARS_PER_WORD

# FastWordpieceTokenizer counts bytes; BERT's limit is characters. We let tf-text accept
# any word up to MAX_CHARS_PER_WORD chars of 4 bytes and apply the character rule ourselves.
_MAX_BYTES_PER_WORD = 4 * MAX_CHARS_PER_WORD + 4


class WordPieceGraph:
  """Builds `[S] strings -> RaggedTensor [S, (words), (pieces)] int64` for a WordPiece vocab."""

  def __init__(self, vocab: Sequence[str], lowercase: bool, unk_token: str = "[UNK]"):
    classes = chars.re2_classes()
    self._lowercase = lowercase
    self._unk_token = unk_token
    self._removed_re = classes["removed"]
    self._mn_re = classes["mn"]
    isolated = f"{classes['punctuation']}|{classes['cjk']}"
    self._split_re = f"{classes['whitespace']}+|{isolated}"
    self._keep_re = isolated
    self._wordpiece = tf_text.FastWordpieceTokenizer(
        vocab=list(vocab), suffix_indicator="##", max_bytes_per_word=_MAX_BYTES_PER_WORD,
        token_out_type=tf.int64, unknown_token=unk_token, no_pretokenization=True)

  def words(self, texts: tf.Tensor) -> tf.RaggedTensor:
    """BERT's BasicTokenizer: `[S]` strings -> `[S, (words)]` normalised words."""
    # Invalid UTF-8 becomes U+FFFD, which _clean_text drops: the same result as decoding
    # with errors="replace" (`read_text_lines`) and tokenising in Python.
    texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace",
                                         replacement_char=0xFFFD)
    texts = tf.strings.regex_replace(texts, self._removed_re, "")  # _clean_text
    if self._lowercase:
      # BERT: str.lower(), then NFD and drop Mn. Lowercasing the whole text instead of each
      # whitespace token is the same: the only context rule (final sigma) stops at spaces.
      texts = tf.strings.lower(texts, encoding="utf-8")
      texts = tf_text.normalize_utf8(texts, "NFD")
      texts = tf.strings.regex_replace(texts, self._mn_re, "")
    # Whitespace separates words; punctuation and CJK chars are words of their own.
    return tf_text.regex_split(texts, self._split_re, self._keep_re)

  def __call__(self, texts: tf.Tensor) -> tf.RaggedTensor:
    words = self.words(texts)
    flat = words.flat_values
    too_long = tf.strings.length(flat, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
    # "[UNK]" is itself a vocab entry, so FastWordpiece maps it to exactly one [UNK] piece
    # (the basic split can never produce it: brackets are punctuation).
    flat = tf.where(too_long, tf.constant(self._unk_token), flat)
    pieces = self._wordpiece.tokenize(flat)
    return words.with_flat_values(pieces)


def replace_extra_segments(segment_pieces: tf.RaggedTensor, segments: tf.Tensor,
                           extra_tokens: Sequence[str], first_id: int) -> tf.RaggedTensor:
  """Replaces what each extra-token segment tokenised to by one word of one piece.

  Args:
    segment_pieces: `[S, (words), (pieces)]` for the `[S]` `segments`.
    segments: the segment strings; a segment equal to `extra_tokens[i]` becomes
      `[[first_id + i]]`.
    extra_tokens: the never-split tokens.
    first_id: id of `extra_tokens[0]`.
  Returns:
    `[S, (words), (pieces)]` int64.
  """
  extra_id = tf.fill(tf.shape(segments), tf.constant(-1, tf.int64))
  for i, token in enumerate(extra_tokens):
    extra_id = tf.where(tf.equal(segments, token), tf.constant(first_id + i, tf.int64), extra_id)
  is_extra = extra_id >= 0
  # Drop the words of extra-token segments, then give those segments their one word.
  word_segment = tf.ragged.row_splits_to_segment_ids(segment_pieces.row_splits)
  keep_word = tf.RaggedTensor.from_row_splits(
      tf.gather(~is_extra, word_segment), segment_pieces.row_splits)
  kept = tf.ragged.boolean_mask(segment_pieces, keep_word)
  extra_values = tf.boolean_mask(extra_id, is_extra)
  extra_words = tf.RaggedTensor.from_row_lengths(
      extra_values, tf.ones_like(extra_values, dtype=tf.int64))
  extra_part = tf.RaggedTensor.from_row_lengths(extra_words, tf.cast(is_extra, tf.int64))
  # In every row one of the two parts is empty, so concatenating keeps the order.
  return tf.concat([kept, extra_part], axis=1)

