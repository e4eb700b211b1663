"""BERT tokenisation: one tokenizer, two faces (Python lists and in-graph tf.data).

`load_tokenizer(path)` returns a `Tokenizer`:
* a WordPiece vocabulary (`vocab.txt`, one piece per line) gives BERT's tokenizer with
  its full semantics (`wordpiece` for Python, `ingraph` in-graph);
* a SentencePiece model (`*.model`) gives the same interface over SentencePiece
  (`sentencepiece_model`).

Extra tokens (e.g. `@GENE$` for relation extraction) are matched in the raw text before
any other step, like HuggingFace "added tokens", never split, and get ids
`len(base vocab) + i`; `tokenizer.vocab` lists them at the end.
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
