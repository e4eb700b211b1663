"""Dropout with Bernoulli masks from the module's key, a drop-in for `flax.linen.Dropout`.

History (WORKSPACE_NOTES, issues 12 and 14): sessions 2-11 drew the masks from a cheap
counter hash (lowbias32 of each element's flat index, seeded from the key), because
`jax.random.bernoulli` hashes one threefry block per element and dominated the CPU step.
Those masks passed every statistical check (keep rate, neighbour and cross-key
correlation, per-row variance, forward/backward identity), yet they trained worse: on
ChemProt (MiniLM, one epoch) three seeds gave test F1 0.3188 / 0.3143 / 0.3139, while
the same runs with only the mask bits drawn by `jax.random.bernoulli` gave 0.3376 (seed
43) and 0.3436 (seed 44), next to transformers + torch's 0.3415 / 0.3494, with a lower
training loss in nearly every logging window. So the masks are Bernoulli again (the same
draw as flax's Dropout; partitionable threefry, so identical under any sharding). The
drop probability is still rounded to a multiple of 2^-16 and kept values are divided by
the exact keep probability, so the output is unbiased.

Session 13 also tried four 16-bit draws per threefry block (the same generator, 4x less
work for the mask): at most 5% of the step, and ChemProt seed 44 gave 0.3232 against
0.3436 / 0.3459 from two Bernoulli streams. Not shipped; see WORKSPACE_NOTES before trying
another generator.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_BITS = 16  # Resolution of the drop probability: rate is rounded to a multiple of 2^-16.


def drop_threshold(rate: float) -> int:
  """The drop probability in units of 2^-16."""
  return int(round(float(rate) * (1 << _BITS)))


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
  """Boolean keep mask of `shape`: True with probability 1 - drop_threshold(rate) / 2^16."""
  return jax.random.bernoulli(key, 1.0 - drop_threshold(rate) / (1 << _BITS), tuple(shape))


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
  """Inverted dropout of `x` (identity when nothing drops)."""
  threshold = drop_threshold(rate)
  if threshold == 0:
    return x
  if threshold >= 1 << _BITS:
    return jnp.zeros_like(x)
  keep_prob = 1.0 - threshold / (1 << _BITS)
  mask = keep_mask(key, x.shape, rate)
  return lax.select(mask, x / keep_prob, jnp.zeros_like(x))


class Dropout(nn.Module):
  """`flax.linen.Dropout(rate)`; key from the "dropout" rng stream."""

  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    return dropout(x, self.rate, self.make_rng("dropout"))


__all__ = ["Dropout", "dropout", "keep_mask", "drop_threshold"]
