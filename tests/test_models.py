"""BertEncoder and the heads: parameter tree contract, init, scan/remat/bf16 equivalences.

Numerical parity with transformers is in tests/test_checkpoints_hf.py; these tests check the
structure and the equivalences between our own execution modes.
"""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from biobert_jax import BertConfig, models, runtime
from biobert_jax.checkpoints import flatten, stack_layers, unstack_layers
from biobert_jax.models.encoder import activation, explicit_attention

CONFIG = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=40)
B, L = 3, 12


def _inputs(seed=0, batch=B, length=L, vocab=CONFIG.vocab_size):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, vocab, (batch, length), dtype=np.int32)
  types = (np.arange(length)[None] >= length // 2).astype(np.int32).repeat(batch, 0)
  mask = np.ones((batch, length), np.int32)
  mask[1, 7:] = 0  # one padded example
  return ids, types, mask


def _random_params(module, seed=0):
  """Random params of `module`'s shapes without compiling its init (keeps the tests fast)."""
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    base = 1.0 if jax.tree_util.keystr(path).endswith("['scale']") else 0.0
    return jnp.asarray(base + 0.05 * rng.standard_normal(s.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(leaf, models.param_shapes(module))


@pytest.fixture(scope="module")
def encoder_params():
  return models.init_params(models.BertEncoder(CONFIG), jax.random.key(0))


@functools.partial(jax.jit, static_argnums=0)
def _apply(module, params, *args):
  return module.apply({"params": params}, *args)


def _run(module, params, *args):
  """Jitted deterministic apply; one compile per (module, shapes) across all tests."""
  return _apply(module, params, *args)


def test_parameter_tree_matches_contract(encoder_params):
  H, N, D, I, V = 32, 4, 8, 64, 97
  want = {
      "embeddings/word_embeddings/embedding": ((V, H), P("vocab", "embed")),
      "embeddings/position_embeddings/embedding": ((40, H), P(None, "embed")),
      "embeddings/token_type_embeddings/embedding": ((2, H), P(None, "embed")),
      "embeddings/LayerNorm/scale": ((H,), P("embed")),
      "embeddings/LayerNorm/bias": ((H,), P("embed")),
      "pooler/dense/kernel": ((H, H), P("embed", "embed_out")),
      "pooler/dense/bias": ((H,), P("embed_out")),
  }
  for i in range(2):
    lp = f"encoder/layer_{i}/"
    for proj in ("query", "key", "value"):
      want[lp + f"attention/self/{proj}/kernel"] = ((H, N, D), P("embed", "heads", "kv"))
      want[lp + f"attention/self/{proj}/bias"] = ((N, D), P("heads", "kv"))
    want[lp + "attention/output/dense/kernel"] = ((N, D, H), P("heads", "kv", "embed"))
    want[lp + "attention/output/dense/bias"] = ((H,), P("embed"))
    want[lp + "intermediate/dense/kernel"] = ((H, I), P("embed", "mlp"))
    want[lp + "intermediate/dense/bias"] = ((I,), P("mlp"))
    want[lp + "output/dense/kernel"] = ((I, H), P("mlp", "embed"))
    want[lp + "output/dense/bias"] = ((H,), P("embed"))
    for ln in ("attention/output/LayerNorm", "output/LayerNorm"):
      want[lp + ln + "/scale"] = ((H,), P("embed"))
      want[lp + ln + "/bias"] = ((H,), P("embed"))
  flat = flatten(encoder_params)
  axes = flatten(models.logical_axes(models.BertEncoder(CONFIG)))
  assert {k: v.shape for k, v in flat.items()} == {k: s for k, (s, _) in want.items()}
  assert axes == {k: a for k, (_, a) in want.items()}
  assert all(isinstance(v, jax.Array) for v in flat.values())  # unboxed


def test_bert_initialisation(encoder_params):
  flat = flatten(encoder_params)
  emb = np.asarray(flat["embeddings/word_embeddings/embedding"])
  # tf.truncated_normal_initializer(stddev=0.02) as BERT: a N(0, 0.02) cut at +-2 stddev,
  # whose own std is 0.02 * 0.8796 = 0.0176.
  assert abs(emb.std() - 0.0176) < 0.0015 and np.abs(emb).max() <= 0.04 + 1e-6
  assert np.all(np.asarray(flat["encoder/layer_0/attention/self/query/bias"]) == 0)
  assert np.all(np.asarray(flat["encoder/layer_1/output/LayerNorm/scale"]) == 1)
  assert np.all(np.asarray(flat["encoder/layer_1/output/LayerNorm/bias"]) == 0)


def test_defaults_for_token_types_and_mask(encoder_params):
  m = models.BertEncoder(CONFIG)
  ids, _, _ = _inputs()
  a = _run(m, encoder_params, ids)
  b = _run(m, encoder_params, ids, np.zeros_like(ids), np.ones_like(ids))
  # Two different XLA programs (defaults built in-graph vs passed in): equal up to float
  # reassociation, not bit for bit (a fresh clone once differed by 9.3e-10).
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(a[1], b[1], rtol=1e-6, atol=1e-6)
  assert a[0].shape == (B, L, 32) and a[1].shape == (B, 32)


def test_padding_does_not_change_real_positions(encoder_params):
  m = models.BertEncoder(CONFIG)
  ids, types, mask = _inputs()
  seq, pooled = _run(m, encoder_params, ids[1:2, :7], types[1:2, :7], mask[1:2, :7])
  seq_pad, pooled_pad = _run(m, encoder_params, ids[1:2], types[1:2], mask[1:2])
  np.testing.assert_allclose(seq_pad[:, :7], seq, atol=1e-5)
  np.testing.assert_allclose(pooled_pad, pooled, atol=1e-5)


def test_explicit_attention_equals_dot_product_attention():
  rng = np.random.default_rng(1)
  q, k, v = (jnp.asarray(rng.normal(size=(2, 5, 3, 4)), jnp.float32) for _ in range(3))
  mask = jnp.asarray(rng.random((2, 1, 1, 5)) > 0.3).at[:, :, :, 0].set(True)
  np.testing.assert_allclose(explicit_attention(q, k, v, mask),
                             jax.nn.dot_product_attention(q, k, v, mask=mask), atol=1e-6)


def test_dropout_is_random_in_training_and_off_when_deterministic(encoder_params):
  # Training mode through the most involved path: dropout inside remat'd, scanned layers.
  m = models.BertEncoder(CONFIG, scan_layers=True, remat=True)
  params = stack_layers(encoder_params)
  ids, types, mask = _inputs()
  f = jax.jit(lambda p, r, det: m.apply({"params": p}, ids, types, mask, deterministic=det,
                                        rngs={"dropout": r})[0], static_argnums=2)
  t1, t2 = f(params, jax.random.key(1), False), f(params, jax.random.key(2), False)
  e1, e2 = f(params, jax.random.key(1), True), f(params, jax.random.key(2), True)
  assert np.isfinite(np.asarray(t1)).all()
  assert np.abs(np.asarray(t1 - t2)).max() > 1e-2 and np.abs(np.asarray(t1 - e1)).max() > 1e-2
  np.testing.assert_array_equal(e1, e2)


def test_scan_equals_unrolled_and_stack_round_trip(encoder_params):
  ids, types, mask = _inputs()
  stacked = stack_layers(encoder_params)
  assert stacked["encoder"]["layer"]["attention"]["self"]["query"]["kernel"].shape == (2, 32, 4, 8)
  scan = models.BertEncoder(CONFIG, scan_layers=True)
  # The stacked tree has exactly the structure nn.scan initialises.
  fresh = models.param_shapes(scan)
  assert jax.tree.map(np.shape, fresh) == jax.tree.map(np.shape, stacked)
  assert models.logical_axes(scan)["encoder"]["layer"]["intermediate"]["dense"]["kernel"] == P(
      "layers", "embed", "mlp")
  want = _run(models.BertEncoder(CONFIG), encoder_params, ids, types, mask)
  got = _run(scan, stacked, ids, types, mask)
  np.testing.assert_allclose(got[0], want[0], atol=1e-5)
  np.testing.assert_allclose(got[1], want[1], atol=1e-5)
  back = unstack_layers(stacked)
  jax.tree.map(np.testing.assert_array_equal, back, encoder_params)


# slow: compiles the encoder three ways (~15 s); the parity tests stay in the fast tier.
@pytest.mark.slow
def test_remat_scan_same_loss_and_gradients_as_plain(encoder_params):
  ids, types, mask = _inputs()

  def loss(module, p):
    seq, pooled = module.apply({"params": p}, ids, types, mask)
    return jnp.sum(seq ** 2) + jnp.sum(pooled)

  plain = models.BertEncoder(CONFIG)
  remat = models.BertEncoder(CONFIG, scan_layers=True, remat=True)
  l1, g1 = jax.jit(jax.value_and_grad(lambda p: loss(plain, p)))(encoder_params)
  l2, g2 = jax.jit(jax.value_and_grad(lambda p: loss(remat, p)))(stack_layers(encoder_params))
  np.testing.assert_allclose(l2, l1, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
               unstack_layers(g2), g1)


@pytest.mark.parametrize("scan", [False, True])
def test_saved_activations_keep_loss_and_gradients(encoder_params, scan):
  """The accelerators' runtime keeps only SAVED_ACTIVATIONS in the backward pass and
  recomputes the rest: with dropout on, the same loss and gradients as plain autodiff."""
  ids, types, mask = _inputs()
  params = stack_layers(encoder_params) if scan else encoder_params
  module = models.BertEncoder(CONFIG, scan_layers=scan)

  def loss(p):
    seq, pooled = module.apply({"params": p}, ids, types, mask, deterministic=False,
                               rngs={"dropout": jax.random.key(3)})
    return jnp.sum(seq ** 2) + jnp.sum(pooled)

  tpu = runtime.for_platform("tpu")
  assert tpu.save_named_activations
  plain = dataclasses.replace(tpu, save_named_activations=False)
  saving = jax.make_jaxpr(tpu.traced(jax.grad(loss)))(params)
  assert "SaveOnlyTheseNames" in str(saving)
  l1, g1 = jax.jit(plain.traced(jax.value_and_grad(loss)))(params)
  l2, g2 = jax.jit(tpu.traced(jax.value_and_grad(loss)))(params)
  np.testing.assert_allclose(l2, l1, rtol=1e-6)
  # Recomputation reorders float32 sums: measured max abs difference 1.7e-5.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), g2, g1)


def test_remat_unrolled_same_output(encoder_params):
  ids, types, mask = _inputs()
  want = _run(models.BertEncoder(CONFIG), encoder_params, ids, types, mask)
  got = _run(models.BertEncoder(CONFIG, remat=True), encoder_params, ids, types, mask)
  np.testing.assert_allclose(got[0], want[0], atol=1e-6)


def test_bf16_compute_with_f32_params_stays_close(encoder_params):
  ids, types, mask = _inputs()
  f32 = _run(models.BertEncoder(CONFIG), encoder_params, ids, types, mask)
  bf16 = _run(models.BertEncoder(CONFIG, dtype=jnp.bfloat16), encoder_params, ids, types, mask)
  assert bf16[0].dtype == jnp.bfloat16
  assert jax.tree.leaves(encoder_params)[0].dtype == jnp.float32
  # Outputs are LayerNorm-ed (unit scale); bf16 has an 8-bit mantissa (rel. step 2^-8 = 0.004)
  # and errors compound over 2 layers. Measured: max abs diff 0.016, mean 0.0023, pooled
  # 0.001; bounds leave ~5x headroom for other CPUs/XLA versions.
  diff = np.abs(np.asarray(bf16[0], np.float32) - np.asarray(f32[0]))
  assert diff.max() < 0.1 and diff.mean() < 0.02, (diff.max(), diff.mean())
  pdiff = np.abs(np.asarray(bf16[1], np.float32) - np.asarray(f32[1]))
  assert pdiff.max() < 0.05, pdiff.max()


def test_pretraining_gathers_masked_positions_before_projection():
  m = models.BertForPreTraining(CONFIG)
  params = _random_params(m, 1)
  assert sorted(params) == ["cls", "encoder"]
  assert params["cls"]["predictions"]["output_bias"].shape == (97,)
  assert params["cls"]["seq_relationship"]["kernel"].shape == (32, 2)
  ids, types, mask = _inputs()
  positions = np.array([[1, 3], [0, 6], [11, 2]], np.int32)
  mlm, nsp = _run(m, params, ids, types, mask, positions)
  full, nsp_full = _run(m, params, ids, types, mask, None)
  assert mlm.shape == (B, 2, 97) and nsp.shape == (B, 2) and mlm.dtype == jnp.float32
  np.testing.assert_allclose(mlm, np.take_along_axis(np.asarray(full), positions[..., None], 1),
                             atol=1e-5)
  # The projection is tied to the word-embedding table: a manual re-computation matches.
  seq, _ = _run(models.BertEncoder(CONFIG), params["encoder"], ids, types, mask)
  t = params["cls"]["predictions"]["transform"]
  h = jax.nn.gelu(seq @ t["dense"]["kernel"] + t["dense"]["bias"], approximate=False)
  h = (h - h.mean(-1, keepdims=True)) / jnp.sqrt(h.var(-1, keepdims=True) + 1e-12)
  h = h * t["LayerNorm"]["scale"] + t["LayerNorm"]["bias"]
  manual = h @ params["encoder"]["embeddings"]["word_embeddings"]["embedding"].T
  np.testing.assert_allclose(full, manual + params["cls"]["predictions"]["output_bias"], atol=1e-4)


def test_task_models_shapes_and_heads():
  ids, types, mask = _inputs()
  tok = models.BertForTokenClassification(CONFIG, num_labels=5)
  p = _random_params(tok)
  assert sorted(p) == ["classifier", "encoder"] and p["classifier"]["kernel"].shape == (32, 5)
  assert _run(tok, p, ids, types, mask).shape == (B, L, 5)

  qa = models.BertForQuestionAnswering(CONFIG)
  p = _random_params(qa)
  assert sorted(p) == ["encoder", "qa_outputs"]
  start, end = _run(qa, p, ids, types, mask)
  assert start.shape == end.shape == (B, L)

  cls = models.BertForSequenceClassification(CONFIG, num_labels=3)
  p = _random_params(cls)
  _, pooled = _run(models.BertEncoder(CONFIG), p["encoder"], ids, types, mask)
  np.testing.assert_allclose(_run(cls, p, ids, types, mask),
                             pooled @ p["classifier"]["kernel"] + p["classifier"]["bias"],
                             atol=1e-5)


def test_entity_start_pooling_uses_the_marked_positions():
  ids, types, mask = _inputs()
  m = models.BertForSequenceClassification(CONFIG, num_labels=3, pooling="entity_start")
  p = _random_params(m)
  assert p["classifier"]["kernel"].shape == (64, 3)
  pos = np.array([[1, 4], [2, 6], [0, 11]], np.int32)
  logits = _run(m, p, ids, types, mask, pos)
  seq, _ = _run(models.BertEncoder(CONFIG), p["encoder"], ids, types, mask)
  feats = np.concatenate([np.asarray(seq)[np.arange(B), pos[:, 0]],
                          np.asarray(seq)[np.arange(B), pos[:, 1]]], axis=-1)
  np.testing.assert_allclose(logits, feats @ p["classifier"]["kernel"] + p["classifier"]["bias"],
                             atol=1e-5)
  with pytest.raises(ValueError, match="entity_positions"):
    m.apply({"params": p}, ids, types, mask)


def test_logical_axes_cover_every_param():
  m = models.BertForPreTraining(CONFIG, scan_layers=True)
  axes = models.logical_axes(m)
  shapes = models.param_shapes(m)
  flat_axes = flatten(axes)
  for path, s in flatten(shapes).items():
    assert len(flat_axes[path]) == len(s.shape), path
  assert flat_axes["cls/predictions/output_bias"] == P("vocab")


def test_activations_match_their_definitions():
  x = np.linspace(-5, 5, 101).astype(np.float32)
  exact = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
  tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
  np.testing.assert_allclose(activation("gelu")(x), exact, atol=1e-6)
  np.testing.assert_allclose(activation("gelu_new")(x), tanh, atol=1e-6)
  np.testing.assert_allclose(activation("gelu_approx")(x), tanh, atol=1e-6)
  np.testing.assert_array_equal(activation("relu")(x), np.maximum(x, 0))
  assert np.abs(exact - tanh).max() > 1e-4  # the two gelus really are different functions
