"""The BERT encoder (embeddings, post-LN layers, pooler) in Flax linen, with the TF1 `bert/`
scope names; LayerNorm, the embedding sum and softmax run in float32 whatever `dtype` is.
"""
from __future__ import annotations

import functools
from typing import Any
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from biobert_jax import runtime
from biobert_jax.config import BertConfig
from biobert_jax.models.dropout import Dropout
from biobert_jax.sharding import constrain

Dtype = Any
Array = jax.Array

# Logical axis names (consumed by biobert_jax.sharding through `logical_axes`).
VOCAB, EMBED, EMBED_OUT, HEADS, KV, MLP, LAYERS = (
    "vocab", "embed", "embed_out", "heads", "kv", "mlp", "layers")
# Activations' dims have names of their own (see sharding.LOGICAL_AXIS_RULES for why).
# The layouts every activation of the model is pinned to with `constrain`:
BATCH, LENGTH = "batch", "length"
HIDDEN = (BATCH, LENGTH, "act_embed")  # [B, L, H]
PER_HEAD = (BATCH, LENGTH, "act_heads", "act_kv")  # [B, L, N, D]
SCORES = (BATCH, "act_heads", LENGTH, LENGTH)  # [B, N, Lq, Lk]
WIDE = (BATCH, LENGTH, "act_mlp")  # [B, L, I]
POOLED = (BATCH, "act_embed")  # [B, H]
# What a layer keeps for its backward pass without remat: the activations of Korthikanti
# et al. 2022, sec. 4.1, in the compute dtype, and the dropout masks. The rest (LayerNorm
# statistics and its float32 copies, GELU's erf, the softmax's inputs) is recomputed from
# these; left to autodiff, XLA kept several float32 [B, L, H] copies per layer.
SAVED_ACTIVATIONS = ("query", "key", "value", "attention_probs", "context", "residual_sum",
                     "layer_norm_out", "mlp_in", "mlp_out", "dropout_mask")


def kernel_init(config: BertConfig, names: tuple[str | None, ...]) -> Callable:
  """BERT's initialiser (truncated normal, stddev=initializer_range) with logical axis names."""
  return nn.with_logical_partitioning(
      nn.initializers.truncated_normal(stddev=config.initializer_range), names)


def zeros_init(names: tuple[str | None, ...]) -> Callable:
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), names)


def ones_init(names: tuple[str | None, ...]) -> Callable:
  return nn.with_logical_partitioning(nn.initializers.ones_init(), names)


def activation(name: str) -> Callable[[Array], Array]:
  if name == "gelu":  # exact erf form, as Google's BERT and HF "gelu"
    return functools.partial(jax.nn.gelu, approximate=False)
  if name in ("gelu_new", "gelu_approx"):
    return functools.partial(jax.nn.gelu, approximate=True)
  if name == "relu":
    return jax.nn.relu
  raise ValueError(f"unknown hidden_act {name!r}")


def layer_norm(config: BertConfig, param_dtype: Dtype, name: str | None = None) -> nn.LayerNorm:
  """LayerNorm computed in float32 (two-pass variance, as HF/TF) with logical axis names."""
  return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=jnp.float32, param_dtype=param_dtype,
                      use_fast_variance=False, scale_init=ones_init((EMBED,)),
                      bias_init=zeros_init((EMBED,)), name=name)


def dense(config: BertConfig, features: int, names: tuple[str | None, str | None], dtype: Dtype,
          param_dtype: Dtype, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, param_dtype=param_dtype, name=name,
                  kernel_init=kernel_init(config, names), bias_init=zeros_init((names[1],)))


class BertEmbeddings(nn.Module):
  """Word + position + token-type embeddings, LayerNorm, dropout."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    c = self.config

    def embed(num: int, names: tuple[str | None, str]) -> nn.Embed:
      # Gathered and summed in float32: cheap, and keeps the LayerNorm input exact.
      return nn.Embed(num, c.hidden_size, dtype=jnp.float32, param_dtype=self.param_dtype,
                      embedding_init=kernel_init(c, names))

    self.word_embeddings = embed(c.vocab_size, (VOCAB, EMBED))
    self.position_embeddings = embed(c.max_position_embeddings, (None, EMBED))
    self.token_type_embeddings = embed(c.type_vocab_size, (None, EMBED))
    self.LayerNorm = layer_norm(c, self.param_dtype)
    self.dropout = Dropout(rate=c.hidden_dropout_prob)

  def __call__(self, input_ids: Array, token_type_ids: Array, deterministic: bool) -> Array:
    seq_len = input_ids.shape[-1]
    if seq_len > self.config.max_position_embeddings:
      raise ValueError(f"sequence length {seq_len} exceeds max_position_embeddings "
                       f"{self.config.max_position_embeddings}")
    positions = jnp.arange(seq_len)[None, :]
    # The lookup nn.Embed does (take, in float32), on the table laid out for use.
    words = jnp.take(self.word_embedding_table().astype(jnp.float32), input_ids, axis=0)
    x = (words + self.position_embeddings(positions)
         + self.token_type_embeddings(token_type_ids))
    x = self.LayerNorm(constrain(x, HIDDEN))
    x = self.dropout(x, deterministic=deterministic)
    return constrain(x.astype(self.dtype), HIDDEN)

  def word_embedding_table(self) -> Array:
    """The [vocab, hidden] table as the lookup and the tied MLM projection use it: its
    hidden dim whole (all-gathered under fsdp, as FSDP does with every weight in use).
    Left split over fsdp, XLA gathered the rows for the WHOLE batch of ids against each
    device's hidden slice ([B * L, H / fsdp] on every device) and all-to-all'ed the
    result, so the lookup's per-device program carried the global batch."""
    return constrain(self.word_embeddings.embedding, (VOCAB, None))


class BertSelfAttention(nn.Module):
  """Multi-head self-attention: query/key/value projections [H, N, D] and the attention."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
    c = self.config

    def proj(name: str) -> Array:
      out = nn.DenseGeneral(
          features=(c.num_attention_heads, c.head_dim), axis=-1, dtype=self.dtype,
          param_dtype=self.param_dtype, kernel_init=kernel_init(c, (EMBED, HEADS, KV)),
          bias_init=zeros_init((HEADS, KV)), name=name)(x)
      return checkpoint_name(constrain(out, PER_HEAD), name)

    q, k, v = proj("query"), proj("key"), proj("value")  # [B, L, N, D]
    rate = c.attention_probs_dropout_prob
    if deterministic or rate == 0.0:
      # Fused / XLA attention; softmax is done in float32 inside.
      return constrain(jax.nn.dot_product_attention(q, k, v, mask=mask), PER_HEAD)
    # jax.nn.dot_product_attention has no attention-probability dropout, and BERT applies
    # dropout to the probabilities during training, so training uses the explicit path.
    dropout = Dropout(rate=rate, save_mask=False)
    ctx = explicit_attention(q, k, v, mask,
                             lambda p: dropout(constrain(p, SCORES), deterministic=False))
    return checkpoint_name(constrain(ctx, PER_HEAD), "context")


def explicit_attention(q: Array, k: Array, v: Array, mask: Array,
                       dropout: Callable[[Array], Array] = lambda p: p) -> Array:
  """softmax(q k^T / sqrt(D), masked) v with `dropout` applied to the probabilities.

  Same contract as jax.nn.dot_product_attention ([B, L, N, D] inputs, boolean mask
  broadcastable to [B, N, Lq, Lk]); logits and softmax in float32.
  """
  logits = jnp.einsum("btnd,bsnd->bnts", q, k, preferred_element_type=jnp.float32)
  logits = logits / jnp.sqrt(jnp.float32(q.shape[-1]))
  logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = dropout(checkpoint_name(jax.nn.softmax(logits, axis=-1), "attention_probs"))
  return jnp.einsum("bnts,bsnd->btnd", probs.astype(v.dtype), v)


class BertAttention(nn.Module):
  """`attention/self` + `attention/output` (dense [N, D, H], dropout, residual, LayerNorm)."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
    c = self.config
    ctx = BertSelfAttention(c, self.dtype, self.param_dtype, name="self")(x, mask, deterministic)
    out = BertAttentionOutput(c, self.dtype, self.param_dtype, name="output")
    return out(ctx, x, deterministic)


class BertAttentionOutput(nn.Module):
  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, ctx: Array, residual: Array, deterministic: bool) -> Array:
    c = self.config
    h = nn.DenseGeneral(features=c.hidden_size, axis=(-2, -1), dtype=self.dtype,
                        param_dtype=self.param_dtype,
                        kernel_init=kernel_init(c, (HEADS, KV, EMBED)),
                        bias_init=zeros_init((EMBED,)), name="dense")(ctx)
    h = Dropout(rate=c.hidden_dropout_prob)(constrain(h, HIDDEN), deterministic=deterministic)
    out = layer_norm(c, self.param_dtype, "LayerNorm")(checkpoint_name(h + residual,
                                                                       "residual_sum"))
    return checkpoint_name(constrain(out.astype(self.dtype), HIDDEN), "layer_norm_out")


class BertIntermediate(nn.Module):
  """`intermediate/dense` [H, I] and the activation."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.config
    h = dense(c, c.intermediate_size, (EMBED, MLP), self.dtype, self.param_dtype, "dense")(x)
    h = checkpoint_name(constrain(h, WIDE), "mlp_in")
    return checkpoint_name(constrain(activation(c.hidden_act)(h), WIDE), "mlp_out")


class BertOutput(nn.Module):
  """`output/dense` [I, H], dropout, residual, `output/LayerNorm`."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h: Array, residual: Array, deterministic: bool) -> Array:
    c = self.config
    h = dense(c, c.hidden_size, (MLP, EMBED), self.dtype, self.param_dtype, "dense")(h)
    h = Dropout(rate=c.hidden_dropout_prob)(constrain(h, HIDDEN), deterministic=deterministic)
    out = layer_norm(c, self.param_dtype, "LayerNorm")(checkpoint_name(h + residual,
                                                                       "residual_sum"))
    return checkpoint_name(constrain(out.astype(self.dtype), HIDDEN), "layer_norm_out")


class BertLayer(nn.Module):
  """One post-LN transformer layer. Returns `(hidden, None)` so it can be the body of nn.scan."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool) -> tuple[Array, None]:
    c, dt, pdt = self.config, self.dtype, self.param_dtype
    x = BertAttention(c, dt, pdt, name="attention")(x, mask, deterministic)
    h = BertIntermediate(c, dt, pdt, name="intermediate")(x)
    return BertOutput(c, dt, pdt, name="output")(h, x, deterministic), None


class BertLayerStack(nn.Module):
  """The `encoder` scope: `layer_{i}` unrolled, or one `layer` scanned over a `layers` axis."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  scan_layers: bool = False
  remat: bool = False

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
    c = self.config
    # remat: each layer recomputes everything but its input in the backward pass; else, on
    # accelerators, it keeps SAVED_ACTIVATIONS (see biobert_jax.runtime).
    # Argument 3 (deterministic; self is 0) is a Python bool and must stay static.
    saving = not self.remat and runtime.current().save_named_activations
    layer_cls = BertLayer
    if self.remat or saving:
      policy = (jax.checkpoint_policies.save_only_these_names(*SAVED_ACTIVATIONS)
                if saving else None)
      layer_cls = nn.remat(BertLayer, static_argnums=(3,), prevent_cse=not self.scan_layers,
                           policy=policy)
    if self.scan_layers:
      scanned = nn.scan(
          layer_cls, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
          in_axes=(nn.broadcast, nn.broadcast), length=c.num_hidden_layers,
          metadata_params={nn.PARTITION_NAME: LAYERS})
      x, _ = scanned(c, self.dtype, self.param_dtype, name="layer")(x, mask, deterministic)
      return x
    for i in range(c.num_hidden_layers):
      x, _ = layer_cls(c, self.dtype, self.param_dtype, name=f"layer_{i}")(x, mask, deterministic)
    return x


class BertPooler(nn.Module):
  """`pooler/dense` + tanh on the first ([CLS]) token."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.config
    first = constrain(x[:, 0], POOLED)  # pins the cotangent too, as every constrain here
    h = dense(c, c.hidden_size, (EMBED, EMBED_OUT), self.dtype, self.param_dtype, "dense")(first)
    return constrain(jnp.tanh(constrain(h, POOLED)), POOLED)


class BertEncoder(nn.Module):
  """BERT encoder: `apply(..., input_ids, token_type_ids, attention_mask, deterministic)`.

  Returns `(sequence_output [B, L, H], pooled_output [B, H])`, both in `dtype`.
  `token_type_ids` defaults to zeros, `attention_mask` (1 = attend, 0 = padding) to ones.
  `scan_layers` stacks the layer parameters under `encoder/layer` (leading `layers` axis);
  `remat` recomputes layer activations in the backward pass.
  """

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  scan_layers: bool = False
  remat: bool = False

  def setup(self):
    c = self.config
    self.embeddings = BertEmbeddings(c, self.dtype, self.param_dtype)
    self.encoder = BertLayerStack(c, self.dtype, self.param_dtype, self.scan_layers, self.remat)
    self.pooler = BertPooler(c, self.dtype, self.param_dtype)

  def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
               attention_mask: Array | None = None,
               deterministic: bool = True) -> tuple[Array, Array]:
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    if attention_mask is None:
      attention_mask = jnp.ones_like(input_ids)
    # [B, 1, 1, Lk]: broadcast over heads and queries by the attention.
    mask = (attention_mask > 0)[:, None, None, :]
    x = self.embeddings(input_ids, token_type_ids, deterministic)
    x = self.encoder(x, mask, deterministic)
    return x, self.pooler(x)

  def word_embedding_table(self) -> Array:
    return self.embeddings.word_embedding_table()
