"""Prediction over a whole feature set in fixed-shape batches, shared by the fine-tuning
trainer's dev/test evaluation, raw-text prediction and annotation at scale; and the batch
shaping it shares with training (padding trimmed to length buckets, device dtypes).

Its own module, depending on JAX and NumPy alone: the trainer's batches import it, and so
do the prediction libraries, without pulling in one another.
"""
from __future__ import annotations

import collections
from typing import Any
from collections.abc import Callable

import jax
import numpy as np

Batches = list[tuple[np.ndarray, int | None]]
MAX_IN_FLIGHT = 16  # batches dispatched ahead of the one being fetched


def bucketed_length(longest: int, full: int, bucket: int) -> int:
  """`longest` rounded up to a multiple of `bucket` (at most `full`; `full` at bucket 0)."""
  if bucket <= 0:
    return full
  return min(full, max(bucket, -(-int(longest) // bucket) * bucket))


def trimmed_length(attention_mask: np.ndarray, bucket: int) -> int:
  """The batch's longest row rounded up to a multiple of `bucket` (at most the full length).

  Few distinct lengths means few compilations, and short batches skip most of the padding
  (NER sentences average ~40 pieces against a max_seq_length of 128).
  """
  longest = int(attention_mask.sum(axis=1).max()) if attention_mask.size else 1
  return bucketed_length(longest, attention_mask.shape[1], bucket)


def trim_batch(batch: dict[str, np.ndarray], length: int, full: int) -> dict[str, np.ndarray]:
  """Cuts every [B, full, ...] array to [B, length, ...]."""
  if length == full:
    return batch
  return {k: v[:, :length] if v.ndim >= 2 and v.shape[1] == full else v
          for k, v in batch.items()}


def device_dtypes(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """int64/float64 host arrays as the int32/float32 the device computes with."""
  out = {}
  for k, v in batch.items():
    if v.dtype.kind in "iu" and v.dtype.itemsize > 4:
      v = v.astype(np.int32)
    elif v.dtype.kind == "f" and v.dtype.itemsize > 4:
      v = v.astype(np.float32)
    out[k] = v
  return out


def batch_plan(features: dict[str, np.ndarray], batch_size: int, bucket: int = 0
               ) -> Batches:
  """The batches `predict_in_batches` feeds: (feature rows, sequence length) each.

  With `bucket` > 0 the rows run sorted by attention-mask length, so each batch holds
  similar lengths and is cut to its longest row rounded up to a multiple of `bucket`.
  Without an attention mask nothing says where padding is: the length is None (untrimmed).
  """
  mask = features.get("attention_mask")
  n = len(next(iter(features.values()))) if features else 0
  if mask is None:
    return [(np.arange(s, min(s + batch_size, n)), None) for s in range(0, n, batch_size)]
  rows = mask.sum(axis=1)
  order = np.argsort(rows, kind="stable") if bucket > 0 else np.arange(n)
  batches = []
  for start in range(0, n, batch_size):
    idx = order[start:start + batch_size]
    batches.append((idx, bucketed_length(rows[idx].max(), mask.shape[1], bucket)))
  return batches


def predict_lengths(features: dict[str, np.ndarray], batch_size: int,
                    bucket: int = 0) -> list[int]:
  """The distinct sequence lengths `predict_in_batches` feeds, in the order it feeds them
  (what to compile ahead)."""
  return list(dict.fromkeys(n for _, n in batch_plan(features, batch_size, bucket)
                            if n is not None))


def _batch(features: dict[str, np.ndarray], rows: np.ndarray, length: int | None,
           batch_size: int) -> dict[str, np.ndarray]:
  """`rows` as a full batch: a short one is filled with copies of its first row (outputs
  dropped after), so that every batch of a length has one shape: one compilation."""
  idx = np.concatenate([rows, np.repeat(rows[:1], batch_size - len(rows))])
  batch = {k: v[idx] for k, v in features.items()}
  if length is not None:
    batch = trim_batch(batch, length, features["attention_mask"].shape[1])
  return device_dtypes(batch)


def predict_in_batches(forward: Callable, params: Any, features: dict[str, np.ndarray],
                       batch_size: int, *, bucket: int = 0, put: Any = None) -> Any:
  """`forward(params, batch)` over all rows of `features` ([N, ...] arrays), its outputs
  (a pytree of [N, ...] arrays) in feature order; None when there are no rows.

  Batches follow `batch_plan`. With `put` (a sharding) each batch is placed on the devices
  first. Up to MAX_IN_FLIGHT batches are dispatched ahead of the one fetched, so the
  devices never wait on the host between batches, and a large split's outputs do not all
  sit on the devices at once. [B, length, ...] outputs of trimmed batches are padded back
  to the full length with zeros (the positions that were padding).
  """
  batches = batch_plan(features, batch_size, bucket)
  if not batches:
    return None
  pending: collections.deque = collections.deque()
  fetched = []
  for rows, length in batches:
    batch = _batch(features, rows, length, batch_size)
    pending.append(forward(params, batch if put is None else jax.device_put(batch, put)))
    if len(pending) > MAX_IN_FLIGHT:
      fetched.append(jax.device_get(pending.popleft()))
  fetched += jax.device_get(list(pending))
  full = features["attention_mask"].shape[1] if "attention_mask" in features else None
  return jax.tree.map(lambda *leaves: _gathered(leaves, batches, full), *fetched)


def _gathered(leaves: tuple, batches: Batches, full: int | None) -> np.ndarray:
  """One output's batches, padding rows dropped, trimmed positions restored as zeros, and
  each row put back at its feature's place."""
  n = sum(len(rows) for rows, _ in batches)
  out = None
  for leaf, (rows, length) in zip(leaves, batches):
    v = np.asarray(leaf)[:len(rows)]
    if length is not None and length < full and v.ndim >= 2 and v.shape[1] == length:
      v = np.pad(v, [(0, 0), (0, full - length)] + [(0, 0)] * (v.ndim - 2))
    if out is None:
      out = np.empty((n,) + v.shape[1:], v.dtype)
    out[rows] = v
  return out
