"""Dropout keep masks equal to `jax.random.bernoulli`'s, as straight-line threefry (CPU).

Each element's 32 bits are threefry2x32 of the key and its flat index (partitionable
threefry), the two words XORed. On CPU JAX lowers threefry as a five-step loop over whole
counter arrays; written out as 20 rounds of integer ops, XLA fuses it into the select that
applies it (figures: docs/performance.md). Only measured on CPU, so only the CPU runtime
uses it (`biobert_jax.runtime`); TPU and GPU call `jax.random.bernoulli`, same bits.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BITS = 16  # resolution of the drop probability: thresholds are in units of 2^-16
# Threefry-2x32 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011):
# rotation distances of the two alternating groups of four rounds, and the key-schedule
# parity constant.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(v: jax.Array, d: int) -> jax.Array:
  return lax.shift_left(v, np.uint32(d)) | lax.shift_right_logical(v, np.uint32(32 - d))


def threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
  """Threefry-2x32, 20 rounds, as straight-line integer ops (XLA fuses it whole)."""
  ks = (k0, k1, k0 ^ k1 ^ _PARITY)
  x0, x1 = x0 + ks[0], x1 + ks[1]
  for block in range(5):
    for d in _ROTATIONS[block % 2]:
      x0 = x0 + x1
      x1 = _rotl(x1, d) ^ x0
    x0 = x0 + ks[(block + 1) % 3]
    x1 = x1 + ks[(block + 2) % 3] + np.uint32(block + 1)
  return x0, x1


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
  """uint32 row-major index of every element, built from per-axis iotas (partitionable)."""
  index = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(len(shape))):
    index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
    stride *= shape[axis]
  return index


def keep_mask(key: jax.Array, shape: tuple[int, ...], threshold: int) -> jax.Array:
  """Boolean keep mask: True with probability 1 - threshold / 2^16 (0 < threshold < 2^16);
  equal to `jax.random.bernoulli(key, that probability, shape)` for a threefry key.

  bernoulli keeps an element when uniform < p, where uniform = (bits >> 9) / 2^23 exactly;
  with p = (2^16 - t) / 2^16 that is bits < (2^16 - t) << 16, an integer compare.
  """
  shape = tuple(int(d) for d in shape)
  data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
  if (math.prod(shape) >= 1 << 32 or data.shape != (2,)
      or jax.config.jax_default_prng_impl != "threefry2x32"
      or not jax.config.jax_threefry_partitionable):
    # Beyond a 32-bit index, or another generator or stream layout: JAX's own draw.
    return jax.random.bernoulli(key, 1.0 - threshold / (1 << BITS), shape)
  data = data.astype(jnp.uint32)
  hi, lo = threefry2x32(data[0], data[1], jnp.zeros(shape, jnp.uint32), _flat_index(shape))
  bound = np.uint32(((1 << BITS) - threshold) << (32 - BITS))
  return (hi ^ lo) < bound


__all__ = ["keep_mask", "threefry2x32", "BITS"]
