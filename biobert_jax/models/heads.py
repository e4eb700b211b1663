"""Pre-training heads: masked-LM (`cls/predictions`) and next-sentence (`cls/seq_relationship`).

Names follow the TF1 `cls/` scope of Google's BERT.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from biobert_jax.config import BertConfig
from biobert_jax.models.encoder import (BATCH, EMBED, EMBED_OUT, VOCAB, Array, Dtype, activation,
                                        dense, kernel_init, layer_norm, zeros_init)
from biobert_jax.sharding import constrain

PREDICTED = (BATCH, None, "act_embed")  # [B, P, H]: the hidden states at predicted positions


def gather_positions(sequence: Array, positions: Array) -> Array:
  """`sequence[b, positions[b, p]]`: [B, L, H] x int [B, P] -> [B, P, H]."""
  return jnp.take_along_axis(sequence, positions[..., None].astype(jnp.int32), axis=1)


class BertPredictionHeadTransform(nn.Module):
  """`transform`: dense H->H, activation, LayerNorm."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.config
    h = dense(c, c.hidden_size, (EMBED, EMBED_OUT), self.dtype, self.param_dtype, "dense")(x)
    h = activation(c.hidden_act)(constrain(h, PREDICTED))
    # The LayerNorm scale/bias are [H] over the transform output; "embed" like all LayerNorms.
    return constrain(layer_norm(c, self.param_dtype, "LayerNorm")(h), PREDICTED)


class BertMLMHead(nn.Module):
  """`cls/predictions`: gather masked positions, transform, tied vocab projection + output_bias.

  Gathering before the projection (as Google's `get_masked_lm_output`) means the [H, V] matmul
  runs on the P predicted tokens only, not all L. The projection runs in float32 and returns
  float32 logits: the softmax over ~29k pieces feeds the loss, and with ~15% of tokens
  predicted this matmul is a few percent of the model's FLOPs, so the precision is cheap.
  """

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, sequence_output: Array, word_embeddings: Array,
               masked_lm_positions: Array | None = None) -> Array:
    c = self.config
    x = sequence_output
    if masked_lm_positions is not None:
      x = constrain(gather_positions(x, masked_lm_positions), PREDICTED)
    x = BertPredictionHeadTransform(c, self.dtype, self.param_dtype, name="transform")(x)
    bias = self.param("output_bias", zeros_init((VOCAB,)), (c.vocab_size,), self.param_dtype)
    logits = jnp.einsum("bph,vh->bpv", x.astype(jnp.float32), word_embeddings.astype(jnp.float32))
    return constrain(logits + bias.astype(jnp.float32), (BATCH, None, "act_vocab"))


class BertPreTrainingHeads(nn.Module):
  """The `cls` scope: `predictions` (MLM) and `seq_relationship` (NSP)."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, sequence_output: Array, pooled_output: Array, word_embeddings: Array,
               masked_lm_positions: Array | None) -> tuple[Array, Array]:
    c = self.config
    mlm = BertMLMHead(c, self.dtype, self.param_dtype, name="predictions")(
        sequence_output, word_embeddings, masked_lm_positions)
    # NSP head: dense H->2 on the pooled output, params directly under `seq_relationship`.
    nsp = classifier(c, 2, self.dtype, self.param_dtype, "seq_relationship")(pooled_output)
    return mlm, batch_split(nsp.astype(jnp.float32))


def classifier(config: BertConfig, num_labels: int, dtype: Dtype, param_dtype: Dtype,
               name: str, in_axis: str | None = EMBED) -> nn.Dense:
  """A task output layer with BERT's initialiser (the [in, C] kernel's C axis is replicated)."""
  return nn.Dense(num_labels, dtype=dtype, param_dtype=param_dtype, name=name,
                  kernel_init=kernel_init(config, (in_axis, None)), bias_init=zeros_init((None,)))


def batch_split(x: Array) -> Array:
  """A head's output (logits, features) split over the batch only, its other dims whole."""
  return constrain(x, (BATCH,) + (None,) * (x.ndim - 1))


__all__ = ["batch_split", "BertMLMHead", "BertPreTrainingHeads", "BertPredictionHeadTransform",
           "classifier", "gather_positions"]
