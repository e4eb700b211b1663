"""Pre-training losses (BERT's MLM and NSP) as sums, so k microbatches divided by the full
batch's denominators give exactly the big-batch gradient.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

MLM_WEIGHT_EPS = 1e-5  # BERT's denominator epsilon.


def _nll(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-example negative log-likelihood (f32) and whether the argmax is the label."""
  logits = logits.astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  labels = labels.astype(jnp.int32)
  nll = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return nll, correct


def mlm_sums(logits: jax.Array, label_ids: jax.Array,
             weights: jax.Array) -> dict[str, jax.Array]:
  """Weighted sums for the masked LM over [B, P] gathered positions.

  Returns:
    {"mlm_nll": sum(w * nll), "mlm_correct": sum(w * correct), "mlm_weight": sum(w)}.
  """
  nll, correct = _nll(logits, label_ids)
  w = weights.astype(jnp.float32)
  return {"mlm_nll": jnp.sum(w * nll), "mlm_correct": jnp.sum(w * correct),
          "mlm_weight": jnp.sum(w)}


def nsp_sums(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
  """Sums for next-sentence prediction; labels [B] or [B, 1], 0 = IsNext."""
  nll, correct = _nll(logits, labels.reshape(logits.shape[:-1]))
  return {"nsp_nll": jnp.sum(nll), "nsp_correct": jnp.sum(correct),
          "nsp_count": jnp.asarray(nll.size, jnp.float32)}


def loss_from_sums(sums: dict[str, jax.Array], mlm_denominator: jax.Array,
                   nsp_denominator: jax.Array, nsp_weight: float = 1.0) -> jax.Array:
  """BERT's total loss given the (full-batch) denominators; nsp_weight 0 is MLM only
  (RoBERTa), and then no NSP gradient reaches the encoder."""
  mlm = sums["mlm_nll"] / mlm_denominator
  if nsp_weight == 0:
    return mlm
  return mlm + nsp_weight * sums["nsp_nll"] / nsp_denominator


def metrics_from_sums(sums: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """loss, mlm_loss, nsp_loss, mlm_accuracy (weighted), nsp_accuracy from summed terms."""
  mlm_den = sums["mlm_weight"] + MLM_WEIGHT_EPS
  nsp_den = jnp.maximum(sums["nsp_count"], 1.0)
  mlm_loss = sums["mlm_nll"] / mlm_den
  nsp_loss = sums["nsp_nll"] / nsp_den
  return {
      "loss": mlm_loss + nsp_loss,
      "mlm_loss": mlm_loss,
      "nsp_loss": nsp_loss,
      "mlm_accuracy": sums["mlm_correct"] / mlm_den,
      "nsp_accuracy": sums["nsp_correct"] / nsp_den,
  }
