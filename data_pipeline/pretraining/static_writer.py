"""Writes static pre-training examples (BERT's TFRecord format) from a corpus.

Runs the dynamic pipeline's instance creation and masking `config.dupe_factor` times over
the corpus and serialises with `static_examples.serialize_example`.
"""
from __future__ import annotations

from data_pipeline._tf import tf
from data_pipeline.pretraining import dataset
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
  """
  paths = [output_pattern.format(shard=i, num_shards=num_shards) for i in range(num_shards)]
  writers = [tf.io.TFRecordWriter(path) for path in paths]
  count = 0
  try:
    for dupe in range(config.dupe_factor):
      pass_config = config.copy_and_resolve_references()
      pass_config.seed = config.seed + 1_000_003 * dupe
      dataset = dataset.corpus_batches(pass_config, batch_size=256,
                                           drop_remainder=False, tokenizer=tokenizer,
                                           for_static=True, stats=stats).unbatch()
      for features in dataset.as_numpy_iterator():
        writers[count % num_shards].write(serialize_example(features))
        count += 1
  finally:
    for writer in writers:
      writer.close()
  return paths
