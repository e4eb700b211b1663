r"""Builds a WordPiece vocabulary or a SentencePiece model from corpus text files.

  python -m experiments.build_vocab --input='../shared/data/pretrain/*.txt' \
      --output=/tmp/pubmed_vocab.txt --vocab_size=30000 --kind=wordpiece
"""
import json
import time

from absl import app, flags

from data_pipeline import paths, tokenization, vocab

_INPUT = flags.DEFINE_string("input", None, "comma-separated globs of text files", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "vocab.txt (or the .model path)", required=True)
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 30000, "target size incl. reserved tokens")
_KIND = flags.DEFINE_enum("kind", "wordpiece", ["wordpiece", "sentencepiece"], "what to build")
_LOWERCASE = flags.DEFINE_bool("lowercase", False, "uncased vocabulary (lowercase + strip accents)")
_NUM_UNUSED = flags.DEFINE_integer("num_unused", 100, "[unusedN] slots after the specials")
_ERRORS = flags.DEFINE_enum("errors", "strict", ["strict", "replace"], "invalid UTF-8 policy")
_LOWER_THRESH = flags.DEFINE_integer("lower_thresh", 10, "WordPiece: lowest piece count the "
                                     "size search may try (lower it for small corpora)")
_MIN_COUNT = flags.DEFINE_integer("min_count", None, "WordPiece: learn once at this piece "
                                  "count instead of searching for --vocab_size")
_REPORT = flags.DEFINE_bool("report", True, "print pieces/word vs --compare_vocab")
_COMPARE = flags.DEFINE_string("compare_vocab", "", "default: shared BERT-base cased vocab")


def pieces_per_word(tokenizer: tokenization.Tokenizer, lines: list[str]) -> float:
  words = sum(len(line.split()) for line in lines)
  return sum(map(len, tokenizer.encode(lines))) / max(words, 1)


def main(argv):
  del argv
  start = time.time()
  path = vocab.build_vocab(_INPUT.value, _OUTPUT.value, _VOCAB_SIZE.value, _KIND.value,
                           _LOWERCASE.value, _NUM_UNUSED.value, _ERRORS.value,
                           _LOWER_THRESH.value, _MIN_COUNT.value)
  built_s = time.time() - start
  summary = {"output": str(path), "kind": _KIND.value, "build_seconds": round(built_s, 1)}
  new = tokenization.load_tokenizer(path, lowercase=_LOWERCASE.value)
  summary["vocab_size"] = new.vocab_size
  if _REPORT.value:
    lines = list(vocab.iter_corpus_lines(vocab.expand_inputs(_INPUT.value), _ERRORS.value))
    compare = _COMPARE.value or str(paths.data_path("vocab", "bert-base-cased-vocab.txt"))
    old = tokenization.load_tokenizer(compare, lowercase=_LOWERCASE.value)
    summary["pieces_per_whitespace_word"] = round(pieces_per_word(new, lines), 4)
    summary["compare_vocab"] = compare
    summary["compare_pieces_per_whitespace_word"] = round(pieces_per_word(old, lines), 4)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  app.run(main)
