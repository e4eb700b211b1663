"""Masked-LM masking and padding of one instance, in graph, with stateless randomness.

`mask_and_pad(instance, seed, ...)` turns an unpadded instance (see
pretraining_instances.py) into the feature dict of original BERT: input_ids, input_mask,
segment_ids, masked_lm_positions, masked_lm_ids, masked_lm_weights,
next_sentence_labels. The randomness is a pure function of `seed` (a [2] int tensor,
e.g. [config seed, example index]): the same example gets the same mask each time the
pipeline is rebuilt, and a repeated pass gets a fresh mask because its examples have
new indices (dynamic masking).

As BERT: num_to_predict = min(max_predictions_per_seq, max(1, round(n * masked_lm_prob)));
positions are picked in random order; each picked position becomes [MASK] with
probability 0.8, a random vocabulary id with 0.1 (uniform over the whole vocabulary, as
BERT) and stays unchanged with 0.1; [CLS]/[SEP] are never picked. Deviations: n counts
the maskable tokens only (BERT counts [CLS]/[SEP] too, which adds ~2% at length 128);
with whole-word masking, words are taken in random order while they fit
(cumulative size <= num_to_predict) and the first word that does not fit ends the
selection (BERT skips it and keeps trying shorter words), so WWM masks slightly fewer
tokens than BERT; it never splits a word.
"""
from __future__ import annotations

from data_pipeline._tf import tf

FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                 "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")


def _pad(values: tf.Tensor, length: int) -> tf.Tensor:
  values = values[:length]
  padded = tf.pad(values, [[0, length - tf.shape(values)[0]]])
  return tf.ensure_shape(padded, [length])


def select_masked_positions(word_ids: tf.Tensor, num_to_predict: tf.Tensor,
                            whole_word: bool, seed: tf.Tensor) -> tf.Tensor:
  """Bool [L]: which positions to predict. `word_ids` is -1 on special tokens."""
  maskable = word_ids >= 0
  if whole_word:
    unit = tf.where(maskable, word_ids, -1)
  else:
    unit = tf.where(maskable, tf.cumsum(tf.cast(maskable, tf.int32)) - 1, -1)
  num_units = tf.reduce_max(unit) + 1
  safe_unit = tf.maximum(unit, 0)
  unit_size = tf.math.unsorted_segment_sum(tf.cast(maskable, tf.int32), safe_unit,
                                           num_units)
  priority = tf.random.stateless_uniform([num_units], seed)
  order = tf.argsort(priority)
  fits_in_order = tf.cumsum(tf.gather(unit_size, order)) <= num_to_predict
  # Scatter "taken" back from the random order to unit index.
  taken = tf.scatter_nd(order[:, None], tf.cast(fits_in_order, tf.int32), [num_units])
  return tf.logical_and(maskable, tf.gather(taken, safe_unit) > 0)


def mask_and_pad(instance: dict[str, tf.Tensor], seed: tf.Tensor, *, max_seq_length: int,
                 max_predictions_per_seq: int, masked_lm_prob: float,
                 whole_word_masking: bool, vocab_size: int,
                 mask_id: int) -> dict[str, tf.Tensor]:
  """Masks one instance and pads it to fixed shapes (int32 ids, float32 weights)."""
  tokens = tf.cast(instance["tokens"], tf.int32)
  word_ids = tf.cast(instance["word_ids"], tf.int32)
  select_seed, action_seed, random_id_seed = tf.unstack(
      tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3))
  num_maskable = tf.reduce_sum(tf.cast(word_ids >= 0, tf.float32))
  num_to_predict = tf.minimum(
      max_predictions_per_seq,
      tf.maximum(1, tf.cast(tf.round(num_maskable * masked_lm_prob), tf.int32)))
  picked = select_masked_positions(word_ids, num_to_predict, whole_word_masking,
                                   select_seed)
  length = tf.shape(tokens)[0]
  action = tf.random.stateless_uniform([length], action_seed)
  random_ids = tf.random.stateless_uniform([length], random_id_seed, minval=0,
                                           maxval=vocab_size, dtype=tf.int32)
  replacement = tf.where(action < 0.8, mask_id, tf.where(action < 0.9, tokens, random_ids))
  input_ids = tf.where(picked, replacement, tokens)
  positions = tf.cast(tf.reshape(tf.where(picked), [-1]), tf.int32)  # ascending
  num_picked = tf.shape(positions)[0]
  return {
      "input_ids": _pad(input_ids, max_seq_length),
      "input_mask": _pad(tf.ones([length], tf.int32), max_seq_length),
      "segment_ids": _pad(tf.cast(instance["segment_ids"], tf.int32), max_seq_length),
      "masked_lm_positions": _pad(positions, max_predictions_per_seq),
      "masked_lm_ids": _pad(tf.gather(tokens, positions), max_predictions_per_seq),
      "masked_lm_weights": _pad(tf.ones([num_picked], tf.float32),
                                max_predictions_per_seq),
      "next_sentence_labels": tf.cast(instance["next_sentence_label"], tf.int32),
  }
