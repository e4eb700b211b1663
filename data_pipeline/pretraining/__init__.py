"""Pre-training examples (MLM + NSP) as a streaming tf.data pipeline; see dataset.py.

Modules: `dataset` (the pipeline, iterator with exact resume), `sources` (corpus readers
into tf.data), `instances` (BERT's pairing algorithm), `masking` (vectorised MLM masking),
`static_examples` (BERT's TFRecord feature format), `static_writer` (writes shards),
`workers` (`make_iterator`: in this process or over config.num_workers worker
processes).
"""
from data_pipeline.pretraining.dataset import (CORPUS_FORMATS, FILE_FORMATS, STATE_VERSION,
                                               PretrainingIterator, config_fingerprint,
                                               corpus_batches, default_config, make_dataset,
                                               make_eval_dataset)
from data_pipeline.pretraining.workers import make_iterator

__all__ = ["CORPUS_FORMATS", "FILE_FORMATS", "STATE_VERSION", "PretrainingIterator",
           "config_fingerprint", "corpus_batches", "default_config", "make_dataset",
           "make_eval_dataset", "make_iterator"]
