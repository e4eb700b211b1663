r"""Writes static pre-training data: TFRecord shards in original BERT's format.

  python -m experiments.create_pretraining_data --input_files='/data/pubmed/*.xml.gz' \
      --file_format=pubmed_xml --output_dir=/data/tfrecords --num_shards=64
"""
import sys

from absl import app, flags, logging

from biobert_jax import fs
from data_pipeline import paths, pretraining
from data_pipeline.corpora import ReadStats
from data_pipeline.errors import InputError
from data_pipeline.pretraining.static_writer import write_static_examples

_INPUT = flags.DEFINE_string("input_files", str(paths.data_path(
    "pretrain", "pubmed_abstracts.txt")), "glob or comma-separated globs of corpus files")
_FORMAT = flags.DEFINE_enum("file_format", "text_doc_per_line",
                            list(pretraining.CORPUS_FORMATS), "corpus format")
_OUTPUT = flags.DEFINE_string("output_dir", None, "where the shards go", required=True)
_SHARDS = flags.DEFINE_integer("num_shards", 1, "number of output files")
_VOCAB = flags.DEFINE_string("vocab_path", str(paths.data_path(
    "vocab", "bert-base-cased-vocab.txt")), "WordPiece vocabulary")
_LOWER = flags.DEFINE_boolean("lowercase", False, "lower-case (uncased vocab)")
_MAX_SEQ = flags.DEFINE_integer("max_seq_length", 128, "sequence length")
_MAX_PRED = flags.DEFINE_integer("max_predictions_per_seq", 20, "MLM predictions cap")
_PROB = flags.DEFINE_float("masked_lm_prob", 0.15, "MLM masking rate")
_SHORT = flags.DEFINE_float("short_seq_prob", 0.1, "probability of a shorter target")
_WWM = flags.DEFINE_boolean("whole_word_masking", False, "mask whole words")
_DUPE = flags.DEFINE_integer("dupe_factor", 10, "passes over the corpus (new masks each)")
_SEED = flags.DEFINE_integer("seed", 12345, "random seed")
_HOLDOUT = flags.DEFINE_integer("holdout_every", 100, "crc32(doc id) % k == 0 is held out")
_ON_ERROR = flags.DEFINE_enum("on_error", "skip", ["raise", "skip"], "malformed input")


def main(argv):
  del argv
  config = pretraining.default_config()
  config.update(dict(
      train_files=_INPUT.value, file_format=_FORMAT.value, vocab_path=_VOCAB.value,
      lowercase=_LOWER.value, max_seq_length=_MAX_SEQ.value,
      max_predictions_per_seq=_MAX_PRED.value, masked_lm_prob=_PROB.value,
      short_seq_prob=_SHORT.value, whole_word_masking=_WWM.value, dupe_factor=_DUPE.value,
      seed=_SEED.value, holdout_every=_HOLDOUT.value, on_error=_ON_ERROR.value))
  fs.makedirs(_OUTPUT.value)
  pattern = fs.join(_OUTPUT.value, "pretrain-{shard:05d}-of-{num_shards:05d}.tfrecord")
  stats = ReadStats()
  try:
    written = write_static_examples(config, pattern, _SHARDS.value, stats=stats)
  except (InputError, ValueError) as e:  # empty corpus, bad flag: one line, exit status 1
    sys.exit(f"error: {e}")
  logging.info("wrote %d shards to %s", len(written), _OUTPUT.value)
  print(f"shards: {len(written)} in {_OUTPUT.value}")
  print(f"reader counters (all {config.dupe_factor} passes): {stats}")


if __name__ == "__main__":
  app.run(main)
