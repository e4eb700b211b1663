"""Static pre-training examples: TFRecord shards in original BERT's feature format."""
from __future__ import annotations

import numpy as np

from data_pipeline._tf import tf


def name_to_features(max_seq_length: int,
                     max_predictions_per_seq: int) -> dict[str, tf.io.FixedLenFeature]:
  """The parsing spec of original BERT run_pretraining.py `input_fn_builder`."""
  return {
      "input_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
      "input_mask": tf.io.FixedLenFeature([max_seq_length], tf.int64),
      "segment_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
      "masked_lm_positions": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
      "masked_lm_ids": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
      "masked_lm_weights": tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32),
      "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
  }


def parse_examples(serialized: tf.Tensor, max_seq_length: int,
                   max_predictions_per_seq: int) -> dict[str, tf.Tensor]:
  """A [B] batch of records -> the pipeline's feature dict (int32 ids, [B] NSP labels)."""
  examples = tf.io.parse_example(
      serialized, name_to_features(max_seq_length, max_predictions_per_seq))
  features = {name: (tf.cast(value, tf.int32) if value.dtype == tf.int64 else value)
              for name, value in examples.items()}
  features["next_sentence_labels"] = features["next_sentence_labels"][:, 0]
  return features


def serialize_example(features: dict[str, np.ndarray]) -> bytes:
  """BERT's create_int_feature / create_float_feature encoding of one example."""
  def int_feature(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(
        np.asarray(values, np.int64).reshape(-1))))

  feature = {name: int_feature(values) for name, values in features.items()
             if name != "masked_lm_weights"}
  feature["masked_lm_weights"] = tf.train.Feature(float_list=tf.train.FloatList(
      value=list(np.asarray(features["masked_lm_weights"], np.float32))))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
