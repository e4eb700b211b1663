"""BERT tokenisation: one tokenizer, two faces (Python and in-graph tf.data) with identical
ids; `load_tokenizer` takes a WordPiece vocab.txt or a SentencePiece model.
"""
import pathlib
from collections.abc import Sequence

from data_pipeline.tokenization import sentencepiece_model
from data_pipeline.tokenization.base import (CLS, MASK, PAD, SEP, SPECIAL_TOKENS, UNK, Span,
                                             Tokenizer, WordPieceTokenizer, read_text_lines,
                                             read_vocab)
from biobert_jax import fs


def load_tokenizer(vocab_path: str | pathlib.Path, lowercase: bool = False,
                   extra_tokens: Sequence[str] = ()) -> Tokenizer:
  """A tokenizer for a WordPiece `vocab.txt` or a SentencePiece `*.model`.

  Args:
    vocab_path: the vocabulary file.
    lowercase: lowercase (and, for WordPiece, strip accents) before tokenising, as BERT
      does for uncased vocabularies. Must match how the vocabulary was built.
    extra_tokens: tokens never split, with ids `len(vocab) + i`.
  """
  vocab_path = fs.path(vocab_path)
  if vocab_path.suffix == ".model":
    return sentencepiece_model.SentencePieceTokenizer(
        vocab_path, lowercase=lowercase, extra_tokens=extra_tokens)
  return WordPieceTokenizer(read_vocab(vocab_path), lowercase=lowercase,
                            extra_tokens=extra_tokens, source=str(vocab_path))


__all__ = ["CLS", "MASK", "PAD", "SEP", "SPECIAL_TOKENS", "UNK", "Span", "Tokenizer",
           "WordPieceTokenizer", "load_tokenizer", "read_text_lines", "read_vocab"]
