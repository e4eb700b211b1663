"""Dropout with a cheap counter-based mask, a drop-in for `flax.linen.Dropout`.

Why: flax's Dropout draws `jax.random.bernoulli`, one threefry2x32 hash (20 rounds) per
element. On CPU that dominated the fine-tuning step: one attention-probability mask
[32, 12, 128, 128] cost ~10x the attention's own context matmul (measured in one process,
WORKSPACE_NOTES "Model and checkpoints"). Here the module's dropout key (threefry, as
before) is turned into two 32-bit seeds once, and each element's bits come from a small
integer hash of its flat index (Wellons' "lowbias32" finaliser, applied twice with the two
seeds): ~10 integer ops per element that XLA fuses into the consuming select, so the mask
costs about as much as reading the tensor.

The mask is a pure function of (key, element index), so it is identical whatever the
sharding or mesh (the trainers' mesh-equivalence tests rely on that), like the partitionable
threefry it replaces. It keeps an element iff the top 16 bits of its hash are >= round(rate
* 2^16), and kept values are divided by the resulting keep probability, so the output is
unbiased for that (within 2^-17 of `rate`) drop rate.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_BITS = 16  # Resolution of the drop probability: rate is rounded to a multiple of 2^-16.


def _mix32(x: jax.Array) -> jax.Array:
  """Chris Wellons' lowbias32 integer finaliser (bijective on uint32, low bias)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
  """Row-major element index as uint32, built from per-axis iotas (no reshape, so the
  partitioner can shard it like the tensor it masks)."""
  idx = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(len(shape))):
    idx = idx + lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
    stride *= shape[axis]
  return idx


def drop_threshold(rate: float) -> int:
  """Elements whose 16-bit draw is below this are dropped."""
  return int(round(float(rate) * (1 << _BITS)))


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
  """Boolean keep mask of `shape`: True with probability 1 - drop_threshold(rate) / 2^16."""
  shape = tuple(shape)
  if math.prod(shape) >= 2 ** 32:  # the uint32 index would wrap: use the slow exact path
    return jax.random.bernoulli(key, 1.0 - rate, shape)
  seeds = jax.random.bits(key, (2,), jnp.uint32)
  bits = _mix32(_mix32(_flat_index(shape) + seeds[0]) ^ seeds[1]) >> (32 - _BITS)
  return bits >= jnp.uint32(drop_threshold(rate))


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
  """Inverted dropout of `x` with the counter-hash mask (identity when nothing drops)."""
  threshold = drop_threshold(rate)
  if threshold == 0:
    return x
  if threshold >= 1 << _BITS:
    return jnp.zeros_like(x)
  keep_prob = 1.0 - threshold / (1 << _BITS)
  mask = keep_mask(key, x.shape, rate)
  return lax.select(mask, x / keep_prob, jnp.zeros_like(x))


class Dropout(nn.Module):
  """`flax.linen.Dropout(rate)` with the cheap mask; key from the "dropout" rng stream."""

  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    return dropout(x, self.rate, self.make_rng("dropout"))


__all__ = ["Dropout", "dropout", "keep_mask", "drop_threshold"]
