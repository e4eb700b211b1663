"""Masked-LM masking of a whole padded batch, in graph, with stateless randomness (see
`mask_batch` for the deviations from BERT).
"""
from __future__ import annotations

from data_pipeline._tf import tf

FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                 "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")

_NEVER = 2.0  # priority above any uniform draw: never picked before a real candidate


def word_ids_from_flags(word_flag: tf.Tensor) -> tf.Tensor:
  """[B, L] word index per position (-1 on specials/padding) from flags 1 / 0 / -1."""
  word_flag = tf.cast(word_flag, tf.int32)
  word_ids = tf.cumsum(tf.cast(word_flag == 1, tf.int32), axis=1) - 1
  return tf.where(word_flag >= 0, word_ids, -1)


def _rank_within_rows(priority: tf.Tensor) -> tf.Tensor:
  """[B, N] rank of each entry when its row is sorted ascending by priority."""
  return tf.argsort(tf.argsort(priority, axis=1, stable=True), axis=1, stable=True)


def select_masked_positions(word_flag: tf.Tensor, num_to_predict: tf.Tensor,
                            whole_word: bool, seed: tf.Tensor) -> tf.Tensor:
  """Bool [B, L]: positions to predict. `num_to_predict` is [B]."""
  maskable = tf.cast(word_flag, tf.int32) >= 0
  batch, length = tf.shape(word_flag)[0], tf.shape(word_flag)[1]
  draws = tf.random.stateless_uniform([batch, length], seed)
  if not whole_word:
    rank = _rank_within_rows(tf.where(maskable, draws, _NEVER))
    return tf.logical_and(maskable, rank < num_to_predict[:, None])
  word_ids = word_ids_from_flags(word_flag)
  safe_ids = tf.maximum(word_ids, 0)
  # Pieces per word: row-offset the word ids so one segment sum covers the batch.
  flat_ids = tf.reshape(safe_ids + length * tf.range(batch)[:, None], [-1])
  word_size = tf.reshape(tf.math.unsorted_segment_sum(
      tf.reshape(tf.cast(maskable, tf.int32), [-1]), flat_ids, batch * length),
      [batch, length])
  word_priority = tf.where(word_size > 0, draws, _NEVER)  # one draw per word slot
  order = tf.argsort(word_priority, axis=1, stable=True)
  fits = tf.cumsum(tf.gather(word_size, order, batch_dims=1), axis=1) <= \
      num_to_predict[:, None]
  fits = tf.logical_and(fits, tf.gather(word_size, order, batch_dims=1) > 0)
  # Back from sorted order to word slot: taken[b, order[b, k]] = fits[b, k].
  rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(order))
  taken = tf.scatter_nd(tf.stack([rows, order], axis=-1), tf.cast(fits, tf.int32),
                        [batch, length])
  return tf.logical_and(maskable, tf.gather(taken, safe_ids, batch_dims=1) > 0)


def mask_batch(batch: dict[str, tf.Tensor], seed: tf.Tensor, *,
               max_predictions_per_seq: int, masked_lm_prob: float,
               whole_word_masking: bool, vocab_size: int,
               mask_id: int) -> dict[str, tf.Tensor]:
  """Masks a padded batch ([B, max_seq_length] int32 ids; float32 weights).

  `seed` is [config seed, index of the batch's first example]: the same batch gets the same
  masks whenever the pipeline is rebuilt, a repeated pass gets fresh ones.

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
  tokens = tf.cast(batch["tokens"], tf.int32)
  word_flag = tf.cast(batch["word_flag"], tf.int32)  # padding carries -1
  num_rows, length = tf.shape(tokens)[0], tf.shape(tokens)[1]
  select_seed, action_seed, random_id_seed = tf.unstack(
      tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3))
  num_maskable = tf.reduce_sum(tf.cast(word_flag >= 0, tf.float32), axis=1)
  num_to_predict = tf.minimum(
      max_predictions_per_seq,
      tf.maximum(1, tf.cast(tf.round(num_maskable * masked_lm_prob), tf.int32)))
  picked = select_masked_positions(word_flag, num_to_predict, whole_word_masking,
                                   select_seed)
  action = tf.random.stateless_uniform([num_rows, length], action_seed)
  random_ids = tf.random.stateless_uniform([num_rows, length], random_id_seed, minval=0,
                                           maxval=vocab_size, dtype=tf.int32)
  replacement = tf.where(action < 0.8, mask_id, tf.where(action < 0.9, tokens, random_ids))
  input_ids = tf.where(picked, replacement, tokens)
  # Picked positions first, ascending (as BERT sorts them), then the rest.
  position = tf.range(length)[None, :]
  key = tf.where(picked, position, length + position)
  sorted_key = -tf.math.top_k(-key, k=max_predictions_per_seq).values
  valid = sorted_key < length
  positions = tf.where(valid, sorted_key, 0)
  masked_lm_ids = tf.where(valid, tf.gather(tokens, positions, batch_dims=1), 0)
  input_mask = tf.cast(position < tf.cast(batch["length"], tf.int32)[:, None], tf.int32)
  return {
      "input_ids": input_ids * input_mask,
      "input_mask": input_mask,
      "segment_ids": tf.cast(batch["segment_ids"], tf.int32) * input_mask,
      "masked_lm_positions": positions,
      "masked_lm_ids": masked_lm_ids,
      "masked_lm_weights": tf.cast(valid, tf.float32),
      "next_sentence_labels": tf.cast(batch["next_sentence_label"], tf.int32),
  }
