"""Dropout with exactly `jax.random.bernoulli`'s masks; the runtime picks how they are drawn.

CPU: threefry written out (`runtime.dropout_hash`) so XLA fuses it, and hidden-state sites
hand their mask to the backward pass (`save_mask`); TPU/GPU: `jax.random.bernoulli` and plain
autodiff. Same bits either way. Why Bernoulli and nothing cheaper: WORKSPACE_NOTES.md,
"Models and numerics"; figures: docs/performance.md.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.ad_checkpoint import checkpoint_name

from biobert_jax import runtime
from biobert_jax.runtime import dropout_hash

_BITS = dropout_hash.BITS


def drop_threshold(rate: float) -> int:
  """The drop probability in units of 2^-16."""
  return int(round(float(rate) * (1 << _BITS)))


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
  """Boolean keep mask of `shape`: True with probability 1 - drop_threshold(rate) / 2^16,
  equal to `jax.random.bernoulli(key, that probability, shape)`; drawn as the current
  runtime says (threefry written out on CPU, bernoulli elsewhere)."""
  shape = tuple(int(d) for d in shape)
  threshold = drop_threshold(rate)
  if threshold <= 0:
    return jnp.ones(shape, bool)
  if runtime.current().dropout_hash:
    return dropout_hash.keep_mask(key, shape, threshold)
  return jax.random.bernoulli(key, 1.0 - threshold / (1 << _BITS), shape)


def dropout(x: jax.Array, rate: float, key: jax.Array, save_mask: bool = True) -> jax.Array:
  """Inverted dropout of `x` (identity when nothing drops).

  `save_mask` (CPU runtime only; elsewhere plain autodiff) hands the gradient the boolean
  mask through a custom VJP. Without it, XLA fuses the hash into every consumer of the
  mask: for a hidden-state site, the forward select, the backward select and both operands
  of the next dense layer's gradient dots, four threefry hashes per site. With it, two
  (forward and backward). MiniLM, batch 32, one process: the gradient program compiles
  ~0.5-0.9 s faster per shape and steps 7% (L=64), 2.5% (L=128), 0.5% (L=384) faster;
  gradients are equal to the bit (docs/cpu.md). The attention probabilities' site passes False:
  there it changes nothing (two hashes per layer either way).
  """
  threshold = drop_threshold(rate)
  if threshold == 0:
    return x
  if threshold >= 1 << _BITS:
    return jnp.zeros_like(x)
  keep_prob = 1.0 - threshold / (1 << _BITS)
  mask = checkpoint_name(keep_mask(key, x.shape, rate), "dropout_mask")
  if save_mask and runtime.current().dropout_hash:
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
