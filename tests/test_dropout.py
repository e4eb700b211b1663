"""The dropout mask: rate, independence, determinism, sharding invariance."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from biobert_jax import models
from biobert_jax.config import BertConfig
from biobert_jax.models import dropout as dropout_lib
from biobert_jax.runtime import dropout_hash


def test_keep_fraction_matches_rate_and_output_is_unbiased():
  x = jnp.ones((64, 4, 64, 64), jnp.float32)
  y = np.asarray(dropout_lib.dropout(x, 0.1, jax.random.key(0)))
  kept = y != 0
  assert abs(kept.mean() - 0.9) < 0.002  # 1M draws: sd 3e-4
  assert abs(y.mean() - 1.0) < 0.003
  # Neighbouring elements (along rows and across rows) are uncorrelated.
  k = kept.reshape(-1, 64).astype(np.float64)
  assert abs(np.corrcoef(k[:, :-1].ravel(), k[:, 1:].ravel())[0, 1]) < 0.01
  assert abs(np.corrcoef(k[:-1].ravel(), k[1:].ravel())[0, 1]) < 0.01


def test_masks_depend_on_the_key_only():
  shape = (8, 128)
  a = dropout_lib.keep_mask(jax.random.key(1), shape, 0.5)
  b = dropout_lib.keep_mask(jax.random.key(1), shape, 0.5)
  c = dropout_lib.keep_mask(jax.random.key(2), shape, 0.5)
  np.testing.assert_array_equal(a, b)
  agree = float(jnp.mean(a == c))
  assert 0.4 < agree < 0.6  # independent masks agree on about half the elements


def test_rate_edges():
  x = jnp.arange(12.0).reshape(3, 4)
  np.testing.assert_array_equal(dropout_lib.dropout(x, 0.0, jax.random.key(0)), x)
  np.testing.assert_array_equal(dropout_lib.dropout(x, 1.0, jax.random.key(0)), 0 * x)
  module = dropout_lib.Dropout(rate=0.3)
  np.testing.assert_array_equal(module.apply({}, x, deterministic=True), x)


def test_mask_is_identical_under_any_sharding():
  devices = np.array(jax.devices()[:8])
  if devices.size < 2:
    return
  mesh = Mesh(devices.reshape(2, -1), ("data", "model"))
  x = jnp.ones((8, 4, 16, 16), jnp.float32)
  f = lambda x, key: dropout_lib.dropout(x, 0.1, key)
  plain = jax.jit(f)(x, jax.random.key(3))
  sharded = jax.jit(f, in_shardings=(NamedSharding(mesh, P("data", "model")), None),
                    out_shardings=NamedSharding(mesh, P("data", "model")))(x, jax.random.key(3))
  np.testing.assert_array_equal(np.asarray(plain), np.asarray(sharded))


def test_masks_are_jax_random_bernoulli_bit_for_bit():
  """keep_mask computes jax.random.bernoulli's draw (the stream every run so far trained
  with) with straight-line threefry; any difference would change training."""
  for shape in [(1,), (7,), (3, 5), (5, 1, 7), (2, 3, 4, 5), (4, 12, 16, 16)]:
    for seed in (0, 1, 2**31 + 12345):
      for rate in (0.1, 0.9, 1e-5, 0.99999):
        keep_prob = 1.0 - dropout_lib.drop_threshold(rate) / 2**16
        expected = np.asarray(jax.random.bernoulli(jax.random.key(seed), keep_prob, shape))
        for key in (jax.random.key(seed), jax.random.PRNGKey(seed)):  # typed and raw keys
          got = jax.jit(dropout_lib.keep_mask, static_argnums=(1, 2))(key, shape, rate)
          np.testing.assert_array_equal(np.asarray(got), expected,
                                        err_msg=f"shape {shape} seed {seed} rate {rate}")
  np.testing.assert_array_equal(dropout_lib.keep_mask(jax.random.key(0), (4, 4), 0.0),
                                np.ones((4, 4), bool))


def test_threefry_matches_the_published_known_answers():
  """Threefry-2x32, 20 rounds: the Random123 known-answer vectors (kat_vectors)."""
  cases = [((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6b200159, 0x99ba4efe)),
           ((0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff), (0x1cb996fc, 0xbb002be7)),
           ((0x13198a2e, 0x03707344), (0x243f6a88, 0x85a308d3), (0xc4923a9c, 0x483df7a0))]
  for key, count, expected in cases:
    out = dropout_hash.threefry2x32(*(jnp.uint32(v) for v in key + count))
    assert tuple(int(o) for o in out) == expected



def _encoder_gradient(save_masks: bool):
  """The gradient program of a one-layer encoder + token head; `save_masks=False` makes
  every site recompute its mask."""
  config = BertConfig(vocab_size=64, hidden_size=128, num_hidden_layers=1,
                      num_attention_heads=4, intermediate_size=512)
  module = models.BertForTokenClassification(config, num_labels=3)
  params = models.init_params(module, jax.random.key(0))
  ids = jax.random.randint(jax.random.key(1), (8, 64), 0, 64)
  real_dropout = dropout_lib.dropout

  def loss(params, rng):
    dropout_lib.dropout = lambda x, rate, key, save_mask=True: real_dropout(
        x, rate, key, save_mask and save_masks)
    try:
      logits = module.apply({"params": params}, ids, jnp.zeros_like(ids), jnp.ones_like(ids),
                            deterministic=False, rngs={"dropout": rng})
    finally:
      dropout_lib.dropout = real_dropout
    return jnp.sum(jnp.tanh(logits) ** 2)

  return jax.jit(jax.grad(loss)), params


def test_saved_masks_give_the_same_gradients_with_fewer_hashes():
  """Hidden-state sites hand their mask to the gradient (custom VJP) instead of XLA
  recomputing the threefry hash in each consumer: forward select, backward select and the
  operands of the next dense layer's gradient dots."""
  key = jax.random.key(2)
  (saved, params), (recomputed, _) = _encoder_gradient(True), _encoder_gradient(False)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                       rtol=1e-6, atol=1e-8),
               saved(params, key), recomputed(params, key))
  # One hash = 20 rotations, each one shift-left in the optimized HLO. Key splits are
  # hashes too, on a few words; count only the per-element ones (fusions with >= 20).
  def hashes(f):
    blocks = f.lower(params, key).compile().as_text().split("\n\n")
    return sum(b.count("shift-left(") // 20 for b in blocks if b.count("shift-left(") >= 20)
  # Sites: embeddings, attention probabilities, attention output, output, head = 5; with
  # saved masks: two hashes each (forward, backward). XLA:CPU today: 11 vs 19.
  assert hashes(saved) <= 12 < hashes(recomputed)
