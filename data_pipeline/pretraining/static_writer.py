"""Writes static pre-training examples (BERT's TFRecord format) from a corpus; never leaves
an empty shard.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from biobert_jax import fs
from data_pipeline._tf import tf
from data_pipeline.corpora import CorpusError
from data_pipeline.pretraining import dataset as dataset_lib
from data_pipeline.pretraining.static_examples import serialize_example


def write_static_examples(config, output_pattern: str, num_shards: int = 1,
                          tokenizer=None, stats=None) -> list[str]:
  """Writes `num_shards` TFRecord files; returns their paths.

  Args:
    config: the pre-training ConfigDict (data_pipeline.pretraining.default_config());
      file_format is the corpus format, repeat/shuffle are ignored (one ordered pass per
      dupe), dupe_factor passes are written.
    output_pattern: e.g. "/out/pubmed-{shard:05d}-of-{num_shards:05d}.tfrecord".
    num_shards: number of output files; examples go round-robin over them.
    tokenizer: optional tokenizer (else loaded from config.vocab_path).
    stats: optional ReadStats that collects the reader counters.

  Raises:
    CorpusError: the corpus has no usable document (nothing is written), or it gave
      fewer examples than `num_shards` (the partial shards are removed).
  """
  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}")
  if config.dupe_factor < 1:
    raise ValueError(f"dupe_factor must be >= 1, got {config.dupe_factor}")
  if config.max_predictions_per_seq < 1:
    raise ValueError(f"max_predictions_per_seq must be >= 1, got "
                     f"{config.max_predictions_per_seq}")
  if not 0.0 < config.masked_lm_prob <= 1.0:
    raise ValueError(f"masked_lm_prob must be in (0, 1], got {config.masked_lm_prob}")
  if config.max_seq_length < 4:  # [CLS] A [SEP] B [SEP] needs room for one token each
    raise ValueError(f"max_seq_length must be >= 4, got {config.max_seq_length}")
  passes = []
  for dupe in range(config.dupe_factor):
    pass_config = config.copy_and_resolve_references()
    pass_config.seed = config.seed + 1_000_003 * dupe
    # Built before any file is opened: an empty corpus raises here and writes nothing.
    passes.append(dataset_lib.corpus_batches(pass_config, batch_size=256,
                                             drop_remainder=False, tokenizer=tokenizer,
                                             for_static=True, stats=stats).unbatch())
  finals = [output_pattern.format(shard=i, num_shards=num_shards) for i in range(num_shards)]
  # Shards for an object store are written locally, then uploaded whole (see local_copies).
  staging = tempfile.mkdtemp(prefix="biobert-shards-") if fs.is_remote(output_pattern) else None
  paths = [os.path.join(staging, fs.basename(f)) for f in finals] if staging else finals
  writers = [tf.io.TFRecordWriter(path) for path in paths]
  count = 0
  try:
    for examples in passes:
      for features in examples.as_numpy_iterator():
        writers[count % num_shards].write(serialize_example(features))
        count += 1
  finally:
    for writer in writers:
      writer.close()
  if count < num_shards:
    for path in paths:
      os.remove(path)
    raise CorpusError(f"{config.train_files}: only {count} example(s) for {num_shards} "
                      f"shards; no shard may be empty (use fewer shards or more text)")
  if staging:
    try:
      for path, final in zip(paths, finals):
        fs.copy(path, final)
    finally:
      shutil.rmtree(staging, ignore_errors=True)
  return finals
