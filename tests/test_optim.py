"""make_optimizer: BERT's schedule, decay mask, clipping, LAMB and frozen parameters."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from biobert_jax.configs.optim import bert_spec
from biobert_jax.train import optim

PARAMS = {
    "encoder": {
        "embeddings": {"LayerNorm": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
                       "word_embeddings": {"embedding": jnp.ones((6, 4))}},
        "pooler": {"dense": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}},
    },
    "cls": {"predictions": {"output_bias": jnp.ones(6)}},
}


def _spec(**fields):
  """A complete make_optimizer spec: the fields a test sets, BERT's values for the rest."""
  return bert_spec(**{"learning_rate": 1e-4, "warmup_steps": 0, "total_steps": 1, **fields})


def _bert_lr(step, lr, warmup, total):
  """Google BERT optimization.py create_optimizer, written out in plain Python."""
  decayed = lr * (1.0 - min(step, total) / total)
  if step < warmup:
    return lr * step / warmup
  return decayed


def test_schedule_matches_original_bert():
  _, schedule = optim.make_optimizer(_spec(learning_rate=1e-4, warmup_steps=10,
                                      total_steps=100))
  for step in (0, 1, 5, 9, 10, 11, 50, 99, 100, 150):
    assert float(schedule(step)) == pytest.approx(_bert_lr(step, 1e-4, 10, 100), rel=1e-5, abs=1e-12)  # noqa: E501


def test_weight_decay_skips_layernorm_and_biases():
  mask = optim.weight_decay_mask(PARAMS)
  assert mask["encoder"]["embeddings"]["word_embeddings"]["embedding"]
  assert mask["encoder"]["pooler"]["dense"]["kernel"]
  assert not mask["encoder"]["embeddings"]["LayerNorm"]["scale"]
  assert not mask["encoder"]["embeddings"]["LayerNorm"]["bias"]
  assert not mask["encoder"]["pooler"]["dense"]["bias"]
  assert not mask["cls"]["predictions"]["output_bias"]
  # With zero gradients only decay moves params: decayed kernels shrink, the rest stay.
  tx, _ = optim.make_optimizer(_spec(learning_rate=0.1, weight_decay=0.5, total_steps=10,
                                warmup_steps=0))
  grads = jax.tree.map(jnp.zeros_like, PARAMS)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  new = optax.apply_updates(PARAMS, updates)
  np.testing.assert_allclose(new["encoder"]["pooler"]["dense"]["kernel"], 1 - 0.1 * 0.5)
  np.testing.assert_allclose(new["encoder"]["pooler"]["dense"]["bias"], 1.0)
  np.testing.assert_allclose(new["encoder"]["embeddings"]["LayerNorm"]["scale"], 1.0)


def test_adamw_step_equals_handwritten_adam_with_clipping():
  lr, clip = 0.01, 0.5
  tx, _ = optim.make_optimizer(_spec(learning_rate=lr, warmup_steps=0, total_steps=1000,
                                weight_decay=0.0, clip_norm=clip))
  rng = np.random.RandomState(0)
  grads = jax.tree.map(lambda p: jnp.asarray(rng.randn(*p.shape), jnp.float32), PARAMS)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  norm = np.sqrt(sum(float(np.sum(np.square(g))) for g in jax.tree.leaves(grads)))
  for g, u in zip(jax.tree.leaves(grads), jax.tree.leaves(updates)):
    g = np.asarray(g) * min(1.0, clip / norm)
    # First step: bias-corrected moments are m = g, v = g^2.
    np.testing.assert_allclose(u, -lr * g / (np.abs(g) + 1e-6), rtol=1e-5, atol=1e-7)


def test_lamb_runs_and_trust_ratio_scales_updates():
  tx, _ = optim.make_optimizer(_spec(optimizer="lamb", learning_rate=0.01, warmup_steps=0,
                                total_steps=10, weight_decay=0.0, clip_norm=0))
  grads = jax.tree.map(jnp.ones_like, PARAMS)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  # LAMB: ||update|| = lr * ||param|| per leaf (trust ratio), unlike Adam's lr * sqrt(n).
  kernel_update = updates["encoder"]["pooler"]["dense"]["kernel"]
  assert float(jnp.linalg.norm(kernel_update)) == pytest.approx(0.01 * 4.0, rel=1e-4)
  with pytest.raises(ValueError, match="'sgd'"):
    optim.make_optimizer(_spec(optimizer="sgd"))


def test_frozen_params_get_exactly_zero_updates():
  tx, _ = optim.make_optimizer(_spec(learning_rate=0.1, total_steps=10, warmup_steps=0,
                                trainable=(r"^cls/", r"pooler/dense/kernel$")))
  grads = jax.tree.map(jnp.ones_like, PARAMS)
  opt_state = tx.init(PARAMS)
  params = PARAMS
  for _ in range(2):
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(params["encoder"]["embeddings"]["word_embeddings"]["embedding"],
                                PARAMS["encoder"]["embeddings"]["word_embeddings"]["embedding"])
  np.testing.assert_array_equal(params["encoder"]["pooler"]["dense"]["bias"], 1.0)
  assert not np.allclose(params["encoder"]["pooler"]["dense"]["kernel"], 1.0)
  assert not np.allclose(params["cls"]["predictions"]["output_bias"], 1.0)
  with pytest.raises(ValueError, match="matches no parameter"):
    tx_bad, _ = optim.make_optimizer(_spec(trainable=("nothing_here",)))
    tx_bad.init(PARAMS)


def test_a_missing_field_is_named_not_filled_in():
  spec = _spec()
  del spec["b2"]
  with pytest.raises(ValueError, match=r"needs config\.optim\.b2 \('b2' is missing"):
    optim.make_optimizer(spec)


def test_a_config_missing_an_optim_key_is_named():
  from biobert_jax.configs import finetune, pretrain
  from biobert_jax.configs.checks import ConfigError
  config = pretrain.get_config("tiny")
  del config.optim["eps"]
  with pytest.raises(ValueError, match=r"config\.optim\.eps"):
    optim.optimizer_spec(config, 10)
  with pytest.raises(ConfigError, match=r"config\.optim\.eps is missing"):
    pretrain.validate(config)
  config = finetune.get_config("ner")
  del config.optim["warmup_proportion"]
  with pytest.raises(ValueError, match=r"config\.optim\.warmup_steps or "
                     r"config\.optim\.warmup_proportion"):
    optim.optimizer_spec(config, 10)


def test_spec_reads_the_optim_block_bit_for_bit():
  from biobert_jax.configs import finetune, pretrain
  spec = optim.optimizer_spec(pretrain.get_config("tiny"), 1000)
  assert spec == dict(optimizer="adamw", learning_rate=1e-3, warmup_steps=50, total_steps=1000,
                      weight_decay=0.01, b1=0.9, b2=0.999, eps=1e-6, clip_norm=1.0,
                      trainable=())
  spec = optim.optimizer_spec(finetune.get_config("ner"), 95)
  assert (spec["learning_rate"], spec["warmup_steps"]) == (5e-5, 9)  # floor(0.1 * 95)
