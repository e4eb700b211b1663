"""Fine-tuning models: the encoder plus one task head, params `{"encoder": ..., <head>: ...}`."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from biobert_jax.config import BertConfig
from biobert_jax.models.dropout import Dropout
from biobert_jax.models.encoder import Array, BertEncoder, Dtype
from biobert_jax.models.heads import batch_split, classifier, gather_positions

POOLINGS = ("cls", "entity_start")


class BertForTokenClassification(nn.Module):
  """NER: logits [B, L, num_labels] from head `classifier` (dropout + dense)."""

  config: BertConfig
  num_labels: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  scan_layers: bool = False
  remat: bool = False

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
               attention_mask: Array | None = None, deterministic: bool = True) -> Array:
    c = self.config
    seq, _ = BertEncoder(c, self.dtype, self.param_dtype, self.scan_layers, self.remat,
                         name="encoder")(input_ids, token_type_ids, attention_mask, deterministic)
    seq = Dropout(rate=c.hidden_dropout_prob)(seq, deterministic=deterministic)
    logits = classifier(c, self.num_labels, self.dtype, self.param_dtype, "classifier")(seq)
    return batch_split(logits.astype(jnp.float32))


class BertForMultiTokenClassification(nn.Module):
  """Multi-task NER: one encoder, one token classifier per head.

  `heads` is ((name, num_labels), ...); returns {name: logits [B, L, num_labels]}, every
  head on the same encoder output (the encoder runs once). Params: {"encoder", <name>...},
  each head shaped like BertForTokenClassification's `classifier`.
  """

  config: BertConfig
  heads: tuple[tuple[str, int], ...]
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  scan_layers: bool = False
  remat: bool = False

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
               attention_mask: Array | None = None,
               deterministic: bool = True) -> dict[str, Array]:
    c = self.config
    if not self.heads or len({name for name, _ in self.heads}) != len(self.heads):
      raise ValueError(f"heads must be non-empty with distinct names, got {self.heads}")
    seq, _ = BertEncoder(c, self.dtype, self.param_dtype, self.scan_layers, self.remat,
                         name="encoder")(input_ids, token_type_ids, attention_mask, deterministic)
    seq = Dropout(rate=c.hidden_dropout_prob)(seq, deterministic=deterministic)
    return {name: batch_split(
        classifier(c, n, self.dtype, self.param_dtype, name)(seq).astype(jnp.float32))
            for name, n in self.heads}


class BertForSequenceClassification(nn.Module):
  """RE / sentence classification: logits [B, num_labels] from head `classifier`.

  pooling="cls": the pooled [CLS] output (BERT/BioBERT). pooling="entity_start": the hidden
  states at `entity_positions[:, 0]` and `[:, 1]` (int [B, 2]) concatenated -> dense 2H -> C.
  """

  config: BertConfig
  num_labels: int
  pooling: str = "cls"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  scan_layers: bool = False
  remat: bool = False

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
               attention_mask: Array | None = None, entity_positions: Array | None = None,
               deterministic: bool = True) -> Array:
    c = self.config
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling {self.pooling!r} is unknown; valid: {', '.join(POOLINGS)}")
    if self.pooling == "entity_start" and entity_positions is None:
      raise ValueError("pooling='entity_start' needs entity_positions (int [batch, 2])")
    seq, pooled = BertEncoder(c, self.dtype, self.param_dtype, self.scan_layers, self.remat,
                              name="encoder")(input_ids, token_type_ids, attention_mask,
                                              deterministic)
    if self.pooling == "cls":
      features, in_axis = pooled, "embed"
    else:
      starts = gather_positions(seq, entity_positions[:, :2])  # [B, 2, H]
      features, in_axis = batch_split(starts.reshape(starts.shape[0], -1)), None  # [B, 2H]
    features = Dropout(rate=c.hidden_dropout_prob)(features, deterministic=deterministic)
    logits = classifier(c, self.num_labels, self.dtype, self.param_dtype, "classifier",
                        in_axis=in_axis)(features)
    return batch_split(logits.astype(jnp.float32))


class BertForQuestionAnswering(nn.Module):
  """Extractive QA: (start_logits [B, L], end_logits [B, L]) from head `qa_outputs` (dense H->2)."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  scan_layers: bool = False
  remat: bool = False

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
               attention_mask: Array | None = None,
               deterministic: bool = True) -> tuple[Array, Array]:
    c = self.config
    seq, _ = BertEncoder(c, self.dtype, self.param_dtype, self.scan_layers, self.remat,
                         name="encoder")(input_ids, token_type_ids, attention_mask, deterministic)
    logits = classifier(c, 2, self.dtype, self.param_dtype, "qa_outputs")(seq)
    logits = batch_split(logits.astype(jnp.float32))
    return logits[..., 0], logits[..., 1]
