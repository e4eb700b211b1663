"""Vocabulary building: WordPiece over BERT's own word splitter (the PubMedBERT route) and
SentencePiece with BERT's special ids 0-4 (BioBERT-Large).
"""
import collections
import pathlib
from collections.abc import Iterable, Sequence

import sentencepiece as spm
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

from data_pipeline.tokenization import SPECIAL_TOKENS, read_text_lines
from data_pipeline.tokenization.wordpiece import BasicTokenizer

from biobert_jax import fs


def expand_inputs(patterns: str | Sequence[str]) -> list[str]:
  """Files matching comma-separated globs (sorted); raises if a pattern matches nothing."""
  if isinstance(patterns, str):
    patterns = [p for p in patterns.split(",") if p]
  files = []
  for pattern in patterns:
    matched = fs.glob(pattern)
    if not matched:
      raise FileNotFoundError(f"no input file matches {pattern!r}")
    files.extend(matched)
  return files


def iter_corpus_lines(files: Sequence[str], errors: str = "strict") -> Iterable[str]:
  for path in files:
    yield from read_text_lines(path, errors=errors)


def count_words(lines: Iterable[str], lowercase: bool) -> collections.Counter:
  """How often each BERT basic-tokenizer word occurs in `lines`."""
  basic = BasicTokenizer(lowercase)
  counts: collections.Counter = collections.Counter()
  for line in lines:
    counts.update(basic(line))
  return counts


def reserved_tokens(num_unused: int) -> list[str]:
  return list(SPECIAL_TOKENS) + [f"[unused{i}]" for i in range(num_unused)]


def learn_wordpiece_vocab(word_counts: collections.Counter, vocab_size: int,
                          num_unused: int = 100, max_unique_chars: int = 1000,
                          lower_thresh: int = 10, num_iterations: int = 4,
                          min_count: int | None = None) -> list[str]:
  """A WordPiece vocabulary of at most `vocab_size` entries (within 5%, the learner's slack).

  Args:
    word_counts: word -> count, from `count_words`.
    vocab_size: target size including the reserved tokens.
    num_unused: how many [unusedN] slots follow the special tokens.
    max_unique_chars: alphabet size; words with rarer characters are not learnt from
      (those characters then tokenise to [UNK]).
    lower_thresh: lowest piece frequency the learner's threshold search may try; lower
      it for tiny corpora.
    num_iterations: refinement passes of the learner.
    min_count: learn once at this piece-frequency threshold instead of searching for the
      threshold that meets `vocab_size` (each search step is a full learning run; the
      pure-Python learner needs ~2 s per run on 6k distinct words). `vocab_size` is
      then only a cap the learner does not enforce.
  """
  reserved = reserved_tokens(num_unused)
  if vocab_size <= len(reserved):
    raise ValueError(f"vocab_size={vocab_size} leaves no room after {len(reserved)} "
                     "reserved tokens")
  upper_thresh = int(1e7)
  if min_count is not None:
    upper_thresh = lower_thresh = min_count
  vocab = learner.learn(
      dict(word_counts), vocab_size=vocab_size, reserved_tokens=reserved,
      upper_thresh=upper_thresh, lower_thresh=lower_thresh, num_iterations=num_iterations,
      max_unique_chars=max_unique_chars, include_joiner_token=True, joiner="##")
  return vocab


def write_vocab(vocab: Sequence[str], path: str | pathlib.Path) -> None:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(piece + "\n" for piece in vocab), encoding="utf-8")


def train_sentencepiece(files: Sequence[str], model_prefix: str | pathlib.Path,
                        vocab_size: int, lowercase: bool = False,
                        model_type: str = "unigram", character_coverage: float = 0.9999,
                        input_sentence_size: int = 2_000_000) -> pathlib.Path:
  """Trains a SentencePiece model with BERT's special tokens; returns the `.model` path.

  With `lowercase`, the model is trained on str.lower()-ed text and must be loaded with
  `load_tokenizer(path, lowercase=True)`.
  """
  model_prefix = pathlib.Path(model_prefix)
  model_prefix.parent.mkdir(parents=True, exist_ok=True)
  lines = (line.lower() if lowercase else line for line in iter_corpus_lines(files))
  spm.SentencePieceTrainer.train(
      sentence_iterator=(line for line in lines if line.strip()),
      model_prefix=str(model_prefix), vocab_size=vocab_size, model_type=model_type,
      character_coverage=character_coverage, input_sentence_size=input_sentence_size,
      shuffle_input_sentence=True, pad_id=0, pad_piece="[PAD]", unk_id=1,
      unk_piece="[UNK]", bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"],
      # Identity normalisation: offsets stay exact and the ids depend only on the text.
      normalization_rule_name="identity", max_sentence_length=1 << 20,
      num_threads=1, minloglevel=2)
  return model_prefix.with_suffix(".model")


def build_vocab(inputs: str | Sequence[str], output: str | pathlib.Path, vocab_size: int,
                kind: str = "wordpiece", lowercase: bool = False, num_unused: int = 100,
                errors: str = "strict", lower_thresh: int = 10,
                min_count: int | None = None) -> pathlib.Path:
  """Builds a vocabulary from corpus files (one document or sentence per line).

  Returns the written file: `output` (a vocab.txt) for WordPiece, `output` with suffix
  `.model` (plus `.vocab`) for SentencePiece. `lower_thresh`/`min_count`: see
  `learn_wordpiece_vocab` (a small corpus cannot fill a large vocabulary with pieces
  seen >= 10 times; lower `lower_thresh` there).
  """
  files = expand_inputs(inputs)
  output = pathlib.Path(output)
  if kind == "wordpiece":
    counts = count_words(iter_corpus_lines(files, errors), lowercase)
    pieces = learn_wordpiece_vocab(counts, vocab_size, num_unused=num_unused,
                                   lower_thresh=lower_thresh, min_count=min_count)
    write_vocab(pieces, output)
    return output
  if kind == "sentencepiece":
    return train_sentencepiece(files, output.with_suffix(""), vocab_size, lowercase)
  raise ValueError(f"kind must be 'wordpiece' or 'sentencepiece', got {kind!r}")
