"""Parameter-tree surgery: grafting, table extension, freezing."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from biobert_jax.checkpoints import surgery
from biobert_jax.config import BertConfig
from biobert_jax.models import (BertEncoder, BertForPreTraining, BertForTokenClassification,
                                init_params)
from biobert_jax.configs.optim import bert_spec
from biobert_jax.train.optim import make_optimizer

CFG = BertConfig.preset("tiny", hidden_size=32, num_attention_heads=2, intermediate_size=64,
                        vocab_size=50, max_position_embeddings=24, num_hidden_layers=2)


@pytest.fixture(scope="module")
def pretrained():
  return init_params(BertForPreTraining(CFG), jax.random.key(1))


@pytest.fixture(scope="module")
def task_params():
  return init_params(BertForTokenClassification(CFG, num_labels=3), jax.random.key(2))


def _encode(config, params, ids):
  enc = params["encoder"] if "encoder" in params else params
  seq, _ = BertEncoder(config).apply({"params": enc}, ids)
  return np.asarray(seq)


def test_graft_copies_encoder_drops_cls_and_reports(pretrained, task_params, tmp_path):
  params, report = surgery.graft_encoder(task_params, pretrained)
  flat, src, fresh = (surgery.flatten(t) for t in (params, pretrained, task_params))
  for path in flat:
    expected = src[path] if path.startswith("encoder/") else fresh[path]
    np.testing.assert_array_equal(np.asarray(flat[path]), np.asarray(expected), err_msg=path)
  assert set(report.loaded) == {p for p in flat if p.startswith("encoder/")}
  assert set(report.new) == {"classifier/kernel", "classifier/bias"}
  assert set(report.dropped) == {p for p in src if p.startswith("cls/")}
  assert report.new["classifier/kernel"] == [32, 3]
  text = report.format()
  assert "dropped: " in text and "cls/predictions/output_bias (50,)" in text
  report.save(tmp_path / "r.json")
  saved = json.loads((tmp_path / "r.json").read_text())
  assert saved["counts"]["new"] == {"tensors": 2, "params": 32 * 3 + 3}
  assert saved["dropped"]["cls/seq_relationship/kernel"] == [32, 2]


def test_graft_reinit_and_keep(pretrained, task_params):
  params, report = surgery.graft_encoder(task_params, pretrained,
                                         reinit=[r"layer_1/", r"^encoder/pooler/"])
  flat, fresh = surgery.flatten(params), surgery.flatten(task_params)
  reinit = [p for p in flat if "layer_1/" in p or p.startswith("encoder/pooler/")]
  assert sorted(report.reinitialized) == sorted(reinit) and len(reinit) > 10
  for p in reinit:
    np.testing.assert_array_equal(flat[p], fresh[p])
  # keep: continue from a fine-tuned model, head included.
  again, report = surgery.graft_encoder(task_params, params, keep=[r"^classifier/"])
  assert "classifier/kernel" in report.loaded and not report.new
  with pytest.raises(ValueError, match="matches no task parameter path"):
    surgery.graft_encoder(task_params, pretrained, reinit=["layer_7/"])


def _replaced(tree, path, value):
  flat = dict(surgery.flatten(tree))
  flat[path] = value
  return surgery.unflatten(flat)


def test_shape_mismatch_names_path_and_shapes(pretrained, task_params):
  words = "encoder/embeddings/word_embeddings/embedding"
  other = _replaced(pretrained, words, np.zeros((60, 32), np.float32))
  with pytest.raises(ValueError) as e:
    surgery.graft_encoder(task_params, other)
  msg = str(e.value)
  assert words in msg and "(50, 32)" in msg and "(60, 32)" in msg and "extend_vocab" in msg
  kernel = "encoder/encoder/layer_1/intermediate/dense/kernel"
  wide = _replaced(pretrained, kernel, np.zeros((64, 64), np.float32))
  with pytest.raises(ValueError, match=rf"shape mismatch at {kernel}: task model expects "
                     r"\(32, 64\), checkpoint has \(64, 64\)"):
    surgery.graft_encoder(task_params, wide)
  with pytest.raises(ValueError, match="no 'encoder/...' leaves"):
    surgery.graft_encoder(task_params, {"cls": pretrained["cls"]})


# slow: compiles two encoders at two lengths (~8 s).
@pytest.mark.slow
def test_extend_position_embeddings_keeps_old_rows_and_outputs(pretrained):
  config, params = surgery.extend_position_embeddings(CFG, pretrained, 60)
  assert config.max_position_embeddings == 60
  old = np.asarray(pretrained["encoder"]["embeddings"]["position_embeddings"]["embedding"])
  new = params["encoder"]["embeddings"]["position_embeddings"]["embedding"]
  assert new.shape == (60, 32)
  np.testing.assert_array_equal(new[:24], old)
  np.testing.assert_array_equal(new[24:48], old)  # copy-init: the table repeats
  np.testing.assert_array_equal(new[48:], old[:12])
  ids = jnp.arange(20, dtype=jnp.int32)[None] % 50
  np.testing.assert_allclose(_encode(config, params, ids), _encode(CFG, pretrained, ids),
                             rtol=1e-6, atol=1e-6)
  long_ids = jnp.arange(50, dtype=jnp.int32)[None] % 50
  assert np.isfinite(_encode(config, params, long_ids)).all()
  with pytest.raises(ValueError, match="smaller"):
    surgery.extend_position_embeddings(CFG, pretrained, 10)


def test_extend_vocab_mean_and_copy(pretrained):
  config, params = surgery.extend_vocab(CFG, pretrained, 2, init="mean")
  table = np.asarray(pretrained["encoder"]["embeddings"]["word_embeddings"]["embedding"])
  new = params["encoder"]["embeddings"]["word_embeddings"]["embedding"]
  assert config.vocab_size == 52 and new.shape == (52, 32)
  np.testing.assert_array_equal(new[:50], table)
  np.testing.assert_allclose(new[50:], np.repeat(table.mean(0, keepdims=True), 2, 0),
                             atol=5 * CFG.initializer_range / 10)
  assert not np.array_equal(new[50], new[51])  # the noise tells them apart
  bias = params["cls"]["predictions"]["output_bias"]
  assert bias.shape == (52,)
  ids = jnp.array([[2, 7, 9, 49]], jnp.int32)
  np.testing.assert_allclose(_encode(config, params, ids), _encode(CFG, pretrained, ids),
                             rtol=1e-6, atol=1e-6)
  config, params = surgery.extend_vocab(CFG, pretrained, 2, init="copy",
                                        source_ids=[7, [3, 5]])
  new = params["encoder"]["embeddings"]["word_embeddings"]["embedding"]
  np.testing.assert_array_equal(new[50], table[7])
  np.testing.assert_allclose(new[51], (table[3] + table[5]) / 2, rtol=1e-6)
  with pytest.raises(ValueError, match="one source id"):
    surgery.extend_vocab(CFG, pretrained, 2, init="copy", source_ids=[1])


def test_freezing_top_k_leaves_frozen_params_bit_identical(pretrained, task_params):
  params, _ = surgery.graft_encoder(task_params, pretrained)
  patterns = surgery.trainable_patterns_top_k(CFG, 1)
  assert surgery.trainable_patterns_top_k(CFG, 0) == (r"^(?!encoder/)",)
  tx, _ = make_optimizer(bert_spec(learning_rate=1e-2, warmup_steps=0, total_steps=10,
                                   trainable=patterns))
  module = BertForTokenClassification(CFG, num_labels=3)
  ids = jax.random.randint(jax.random.key(0), (4, 10), 0, 50)
  labels = jax.random.randint(jax.random.key(1), (4, 10), 0, 3)

  @jax.jit
  def step(p, state):
    def loss_fn(p):
      logits = module.apply({"params": p}, ids)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    grads = jax.grad(loss_fn)(p)
    updates, state = tx.update(grads, state, p)
    return optax.apply_updates(p, updates), state

  state = tx.init(params)
  new = params
  for _ in range(3):
    new, state = step(new, state)
  before, after = surgery.flatten(params), surgery.flatten(new)
  for path in before:
    trainable = path.startswith(("encoder/encoder/layer_1/", "encoder/pooler/", "classifier/"))
    same = np.array_equal(np.asarray(before[path]), np.asarray(after[path]))
    if not trainable:
      assert same, f"frozen {path} changed"
    elif "pooler" not in path:  # the NER head does not use the pooler: no gradient
      assert not same, f"trainable {path} did not change"
