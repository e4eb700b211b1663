"""BERT with the pre-training heads (masked LM + next-sentence prediction)."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from biobert_jax.config import BertConfig
from biobert_jax.models.encoder import Array, BertEncoder, Dtype
from biobert_jax.models.heads import BertPreTrainingHeads


class BertForPreTraining(nn.Module):
  """Params `{"encoder": <BertEncoder>, "cls": {"predictions", "seq_relationship"}}`.

  `apply(..., input_ids, token_type_ids, attention_mask, masked_lm_positions, deterministic)`
  returns `(mlm_logits [B, P, V] float32, nsp_logits [B, 2] float32)`. With
  `masked_lm_positions=None` every position is predicted (P = L).
  The MLM output matrix is the encoder's word-embedding table (tied, as in BERT).
  """

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  scan_layers: bool = False
  remat: bool = False

  def setup(self):
    self.encoder = BertEncoder(self.config, self.dtype, self.param_dtype, self.scan_layers,
                               self.remat)
    self.cls = BertPreTrainingHeads(self.config, self.dtype, self.param_dtype)

  def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
               attention_mask: Array | None = None, masked_lm_positions: Array | None = None,
               deterministic: bool = True) -> tuple[Array, Array]:
    seq, pooled = self.encoder(input_ids, token_type_ids, attention_mask, deterministic)
    return self.cls(seq, pooled, self.encoder.word_embedding_table(), masked_lm_positions)
