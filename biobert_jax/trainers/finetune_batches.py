"""Fine-tuning batches: per-epoch order from (seed, epoch), length grouping and padding
trimming, whole-split prediction, and the shapes a run will feed (to compile them ahead).
"""
from __future__ import annotations

import itertools
import os
from typing import Any
from collections.abc import Callable, Iterator

import jax
import numpy as np

from biobert_jax.tasks import SplitData
from biobert_jax.runtime import ahead
from biobert_jax.trainers import batched_predict
from biobert_jax.trainers.batched_predict import (bucketed_length, device_dtypes, trim_batch,
                                                  trimmed_length)


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator,
                  lengths: np.ndarray | None = None, group: int = 0) -> list[np.ndarray]:
  """One epoch of sorted index batches: n // batch_size of them, the remainder dropped.

  With `group` > 0 and `lengths`, rows are shuffled, then sorted by length inside chunks of
  `group` batches, and the batches are shuffled again: batches hold similar lengths, so
  trimming (bucket_length) skips most padding, while the order stays random (as HF's
  group_by_length).
  """
  order = rng.permutation(n)
  steps = n // batch_size
  if group > 0 and lengths is not None:
    chunk = group * batch_size
    order = np.concatenate([c[np.argsort(lengths[c], kind="stable")]
                            for c in np.array_split(order, range(chunk, n, chunk))])
    batches = [order[b * batch_size:(b + 1) * batch_size] for b in range(steps)]
    batches = [batches[i] for i in rng.permutation(steps)]
  else:
    batches = [order[b * batch_size:(b + 1) * batch_size] for b in range(steps)]
  return [np.sort(b) for b in batches]


def _train_indices(split: SplitData, batch_size: int, steps_per_epoch: int, seed: int,
                   start_step: int, group: int) -> Iterator[np.ndarray]:
  """The row indices of each training batch from `start_step` on, forever."""
  if split.num_features < batch_size or steps_per_epoch < 1:  # else: an endless empty loop
    raise ValueError(f"{split.num_features} training features cannot fill one batch of "
                     f"{batch_size} ({steps_per_epoch} steps per epoch)")
  mask = split.features.get("attention_mask")
  lengths = mask.sum(axis=1) if mask is not None else None
  epoch, offset = divmod(int(start_step), steps_per_epoch)
  while True:
    order = epoch_batches(split.num_features, batch_size,
                          np.random.default_rng([int(seed), epoch]), lengths, group)
    yield from order[offset:]
    epoch, offset = epoch + 1, 0


def train_batches(split: SplitData, batch_size: int, steps_per_epoch: int, seed: int,
                  start_step: int, bucket: int = 0, group: int = 0
                  ) -> Iterator[dict[str, np.ndarray]]:
  """Training batches from `start_step` on, forever (the loop stops at total_steps).

  Epoch e's order comes from a generator seeded with (seed, e) alone, so a resumed run
  recomputes exactly the batches an uninterrupted one would have seen.
  """
  for idx in _train_indices(split, batch_size, steps_per_epoch, seed, start_step, group):
    batch = {k: v[idx] for k, v in split.features.items()}
    if bucket > 0 and "attention_mask" in batch:
      full = batch["attention_mask"].shape[1]
      batch = trim_batch(batch, trimmed_length(batch["attention_mask"], bucket), full)
    yield device_dtypes(batch)


def train_lengths(split: SplitData, batch_size: int, steps_per_epoch: int, seed: int,
                  start_step: int, total_steps: int, bucket: int = 0, group: int = 0
                  ) -> list[int]:
  """The distinct sequence lengths `train_batches` feeds over steps [start_step,
  total_steps), in the order they first appear (what to compile, first-needed first)."""
  mask = split.features.get("attention_mask")
  if mask is None:
    return []
  rows = mask.sum(axis=1)
  seen: dict[int, None] = {}
  indices = _train_indices(split, batch_size, steps_per_epoch, seed, start_step, group)
  for idx in itertools.islice(indices, max(0, int(total_steps) - int(start_step))):
    seen.setdefault(bucketed_length(rows[idx].max(), mask.shape[1], bucket), None)
  return list(seen)


def predict_lengths(split: SplitData, batch_size: int, bucket: int = 0) -> list[int]:
  """The distinct sequence lengths `predict_split` feeds, in the order it feeds them."""
  return batched_predict.predict_lengths(split.features, batch_size, bucket)


def prediction_passes(splits: list[SplitData]) -> list[SplitData]:
  """What `predict_splits` feeds: the splits' features joined into one split, so that
  several splits (BioASQ's five test batches) are predicted in one pass. Per split, each
  pass pads its last batch to the batch size (BioASQ: 798 windows fed as 864 rows at 32)
  and sorts lengths within the split only. Splits whose feature keys or widths differ are
  fed one by one."""
  if len(splits) <= 1:
    return list(splits)
  widths = [{k: v.shape[1:] for k, v in s.features.items()} for s in splits]
  if any(w != widths[0] for w in widths[1:]):
    return list(splits)
  return [SplitData({k: np.concatenate([s.features[k] for s in splits])
                     for k in splits[0].features}, examples=None)]


def predict_splits(predict_step: Callable, params: Any, splits: list[SplitData],
                   batch_size: int, bucket: int = 0) -> list[dict[str, np.ndarray]]:
  """`predict_split` of each split, computed over `prediction_passes(splits)`."""
  passes = prediction_passes(splits)
  if len(passes) == len(splits):
    return [predict_split(predict_step, params, s, batch_size, bucket) for s in splits]
  outputs = predict_split(predict_step, params, passes[0], batch_size, bucket)
  bounds = np.cumsum([s.num_features for s in splits])[:-1]
  parts = {k: np.split(v, bounds) for k, v in outputs.items()}
  return [{k: parts[k][i] for k in parts} for i in range(len(splits))]


def example_batch(split: SplitData, batch_size: int, length: int) -> dict[str, np.ndarray]:
  """A batch shaped as `train_batches` / `predict_split` feed at `length` (rows are
  arbitrary: only the shapes and dtypes are used, to compile ahead)."""
  idx = np.arange(batch_size) % max(1, split.num_features)
  batch = {k: v[idx] for k, v in split.features.items()}
  mask = batch.get("attention_mask")
  full = mask.shape[1] if mask is not None else length
  return device_dtypes(trim_batch(batch, length, full))


def predict_split(predict_step: Callable, params: Any, split: SplitData, batch_size: int,
                  bucket: int = 0) -> dict[str, np.ndarray]:
  """Outputs over all features of a split, in feature order (`predict_in_batches`)."""
  outputs = batched_predict.predict_in_batches(predict_step, params, split.features,
                                               batch_size, bucket=bucket)
  return {} if outputs is None else outputs


def compile_ahead(train_step: Any, predict_step: Any, state: Any, splits: dict[str, Any],
                  config: Any, batch_size: int, steps_per_epoch: int, start_step: int,
                  total_steps: int, batch_sharding: Any) -> str:
  """Starts compiling every batch shape of the run (runtime.ahead.CompiledByShape steps):
  the training shapes in first-use order, then those of predicting dev and test. Returns
  a line saying what started ("" with config.compile_ahead off)."""
  if not config.get("compile_ahead", True):
    return ""
  threads = int(config.get("compile_threads", 0)) or max(1, (os.cpu_count() or 2) // 2)
  bucket, train = int(config.bucket_length), splits["train"]
  lengths = train_lengths(train, batch_size, steps_per_epoch, int(config.seed), start_step,
                          total_steps, bucket, int(config.group_by_length))
  shapes = [{k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sharding)
             for k, v in example_batch(train, batch_size, n).items()} for n in lengths]
  n_train = train_step.compile_ahead((ahead.abstract(state),), shapes, threads)
  eval_size, predicted = int(config.eval_batch_size), []
  for name in ("dev", "test"):
    for split in prediction_passes(_as_list(splits.get(name))):
      predicted += [ahead.abstract(example_batch(split, eval_size, n))
                    for n in predict_lengths(split, eval_size, bucket)]
  n_predict = predict_step.compile_ahead((ahead.abstract(state["params"]),), predicted,
                                         threads)
  return (f"compiling ahead: {n_train} train and {n_predict} predict shapes "
          f"in {threads} thread{'s' if threads > 1 else ''}")


def _as_list(split: Any) -> list:
  if split is None:
    return []
  return list(split) if isinstance(split, (list, tuple)) else [split]
