"""Dropout with exactly `jax.random.bernoulli`'s masks, threefry written out so XLA fuses it.

Hidden-state sites hand their mask to the backward pass (`save_mask`). Why Bernoulli and
nothing cheaper: WORKSPACE_NOTES.md, "Models and numerics"; figures: docs/performance.md.
"""
from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_BITS = 16  # Resolution of the drop probability: rate is rounded to a multiple of 2^-16.
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


def drop_threshold(rate: float) -> int:
  """The drop probability in units of 2^-16."""
  return int(round(float(rate) * (1 << _BITS)))


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
  """Boolean keep mask of `shape`: True with probability 1 - drop_threshold(rate) / 2^16;
  equal to `jax.random.bernoulli(key, that probability, shape)` for a threefry key.

  bernoulli keeps an element when uniform < p, where uniform = (bits >> 9) / 2^23 exactly;
  with p = (2^16 - t) / 2^16 that is bits < (2^16 - t) << 16, an integer compare.
  """
  shape = tuple(int(d) for d in shape)
  threshold = drop_threshold(rate)
  if threshold <= 0:
    return jnp.ones(shape, bool)
  data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
  if (math.prod(shape) >= 1 << 32 or data.shape != (2,)
      or jax.config.jax_default_prng_impl != "threefry2x32"
      or not jax.config.jax_threefry_partitionable):
    # Beyond a 32-bit index, or another generator or stream layout: JAX's own draw.
    return jax.random.bernoulli(key, 1.0 - threshold / (1 << _BITS), shape)
  data = data.astype(jnp.uint32)
  hi, lo = threefry2x32(data[0], data[1], jnp.zeros(shape, jnp.uint32), _flat_index(shape))
  bound = np.uint32(((1 << _BITS) - threshold) << (32 - _BITS))
  return (hi ^ lo) < bound


def dropout(x: jax.Array, rate: float, key: jax.Array, save_mask: bool = True) -> jax.Array:
  """Inverted dropout of `x` (identity when nothing drops).

  `save_mask` hands the gradient the boolean mask through a custom VJP. Without it, XLA
  fuses the hash into every consumer of the mask: for a hidden-state site, the forward
  select, the backward select and both operands of the next dense layer's gradient dots,
  four threefry hashes per site. With it, two (forward and backward). MiniLM, batch 32, one
  process: the gradient program compiles ~0.5-0.9 s faster per shape and steps 7% (L=64),
  2.5% (L=128), 0.5% (L=384) faster; gradients are equal to the bit (docs/cpu.md).
  The attention probabilities' site passes False:
  there it changes nothing (two hashes per layer either way).
  """
  threshold = drop_threshold(rate)
  if threshold == 0:
    return x
  if threshold >= 1 << _BITS:
    return jnp.zeros_like(x)
  keep_prob = 1.0 - threshold / (1 << _BITS)
  mask = keep_mask(key, x.shape, rate)
  if save_mask:
    return _masked_scale(x, mask, keep_prob)
  return _scale_kept(x, mask, keep_prob)


def _scale_kept(x: jax.Array, mask: jax.Array, keep_prob: float) -> jax.Array:
  """Kept elements divided by the keep probability, dropped ones zero."""
  return lax.select(mask, x / keep_prob, jnp.zeros_like(x))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _masked_scale(x: jax.Array, mask: jax.Array, keep_prob: float) -> jax.Array:
  return _scale_kept(x, mask, keep_prob)


def _masked_scale_fwd(x, mask, keep_prob):
  return _masked_scale(x, mask, keep_prob), mask


def _masked_scale_bwd(keep_prob, mask, g):
  # No cotangent for the boolean mask (float0, as JAX expects for integer-like inputs).
  return (_scale_kept(g, mask, keep_prob), np.zeros(mask.shape, jax.dtypes.float0))


_masked_scale.defvjp(_masked_scale_fwd, _masked_scale_bwd)


class Dropout(nn.Module):
  """`flax.linen.Dropout(rate)`; key from the "dropout" rng stream."""

  rate: float
  save_mask: bool = True  # see `dropout`

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    return dropout(x, self.rate, self.make_rng("dropout"), self.save_mask)


__all__ = ["Dropout", "dropout", "keep_mask", "drop_threshold"]
