"""Fine-tuning batches: per-epoch order from (seed, epoch), length grouping and padding
trimming, and prediction over a whole split in feature order.

The batch order of epoch e depends on (seed, e) alone, so a resumed run recomputes exactly
the batches an uninterrupted run would have seen from any step on.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import jax
import numpy as np

from biobert_jax.tasks import SplitData


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


def trimmed_length(attention_mask: np.ndarray, bucket: int) -> int:
  """The batch's longest row rounded up to a multiple of `bucket` (at most the full length).

  Few distinct lengths means few compilations, and short batches skip most of the padding
  (NER sentences average ~40 pieces against a max_seq_length of 128).
  """
  full = attention_mask.shape[1]
  if bucket <= 0:
    return full
  longest = int(attention_mask.sum(axis=1).max()) if attention_mask.size else 1
  return min(full, max(bucket, -(-longest // bucket) * bucket))


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


def train_batches(split: SplitData, batch_size: int, steps_per_epoch: int, seed: int,
                  start_step: int, bucket: int = 0, group: int = 0
                  ) -> Iterator[dict[str, np.ndarray]]:
  """Training batches from `start_step` on, forever (the loop stops at total_steps).

  Epoch e's order comes from a generator seeded with (seed, e) alone, so a resumed run
  recomputes exactly the batches an uninterrupted one would have seen.
  """
  mask = split.features.get("attention_mask")
  lengths = mask.sum(axis=1) if mask is not None else None
  epoch, offset = divmod(int(start_step), steps_per_epoch)
  while True:
    order = epoch_batches(split.num_features, batch_size,
                          np.random.default_rng([int(seed), epoch]), lengths, group)
    for idx in order[offset:]:
      batch = {k: v[idx] for k, v in split.features.items()}
      if bucket > 0 and "attention_mask" in batch:
        full = batch["attention_mask"].shape[1]
        batch = trim_batch(batch, trimmed_length(batch["attention_mask"], bucket), full)
      yield device_dtypes(batch)
    epoch, offset = epoch + 1, 0


def predict_split(predict_step: Callable, params: Any, split: SplitData, batch_size: int,
                  bucket: int = 0) -> dict[str, np.ndarray]:
  """Outputs over all features of a split, in feature order.

  The last batch is padded, then cut back. With `bucket` > 0 the features run sorted by
  length with trimmed padding, and [B, length, ...] outputs are padded back to the full
  sequence length with zeros (positions that were padding).
  """
  n = split.num_features
  mask = split.features.get("attention_mask")
  use_buckets = bucket > 0 and mask is not None
  full = mask.shape[1] if mask is not None else 0
  order = np.argsort(mask.sum(axis=1), kind="stable") if use_buckets else np.arange(n)
  chunks: list[dict[str, np.ndarray]] = []
  for start in range(0, n, batch_size):
    idx = order[start:start + batch_size]
    batch = {k: v[idx] for k, v in split.features.items()}
    rows = len(idx)
    if rows < batch_size:  # one batch size for every batch: fewer compilations
      batch = {k: np.concatenate([v, np.repeat(v[:1], batch_size - rows, axis=0)])
               for k, v in batch.items()}
    length = trimmed_length(batch["attention_mask"], bucket) if use_buckets else full
    out = jax.device_get(predict_step(params, device_dtypes(trim_batch(batch, length, full))))
    chunk = {}
    for k, v in out.items():
      v = np.asarray(v)[:rows]
      if use_buckets and length < full and v.ndim >= 2 and v.shape[1] == length:
        pad = [(0, 0), (0, full - length)] + [(0, 0)] * (v.ndim - 2)
        v = np.pad(v, pad)
      chunk[k] = v
    chunks.append(chunk)
  if not chunks:
    return {}
  stacked = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  inverse = np.empty_like(order)
  inverse[order] = np.arange(n)
  return {k: v[inverse] for k, v in stacked.items()}
