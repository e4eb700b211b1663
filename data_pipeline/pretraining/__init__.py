"""Pre-training examples (MLM + NSP) as a streaming, resumable tf.data pipeline; see
dataset.py.
"""
from data_pipeline.pretraining.dataset import (CORPUS_FORMATS, FILE_FORMATS, STATE_VERSION,
                                               PretrainingIterator, config_fingerprint,
                                               corpus_batches, default_config, make_dataset,
                                               make_eval_dataset)
from data_pipeline.pretraining.workers import make_iterator

__all__ = ["CORPUS_FORMATS", "FILE_FORMATS", "STATE_VERSION", "PretrainingIterator",
           "config_fingerprint", "corpus_batches", "default_config", "make_dataset",
           "make_eval_dataset", "make_iterator"]
