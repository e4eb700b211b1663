"""Fine-tuned TF1 checkpoints (BioBERT+SQuAD, run_re / run_ner) as fine-tuning init.

Each test writes a TF1 checkpoint with tf.compat.v1's Saver under Google's variable names:
the encoder (`bert/...`, with Adam slots and global_step as run_squad leaves them) plus the
task head of the script that wrote it: run_squad's `cls/squad/output_weights` [2, H] /
`output_bias` [2], run_classifier's and BioBERT's run_re / run_ner `output_weights`
[num_labels, H] / `output_bias` [num_labels]. The encoder must load strictly, a head that
fits the task model must arrive in the task params with the layout the scripts use
(logits = h @ output_weights^T + output_bias; row 0 of the SQuAD head = start logits), and
a head that does not fit must be reported unused.
"""
import jax
import numpy as np
import pytest

from biobert_jax import BertConfig, checkpoints, models
from biobert_jax.checkpoints import CheckpointError, surgery
from biobert_jax.checkpoints.convert import disassemble
from data_pipeline._tf import tf

CONFIG = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=64, hidden_act="gelu")
H = CONFIG.hidden_size


def _encoder_tensors() -> dict[str, np.ndarray]:
  params = {"encoder": models.init_params(models.BertEncoder(CONFIG), jax.random.key(3))}
  tensors, _ = disassemble(CONFIG, params, fmt="tf")
  return tensors


def write_tf1(directory, extra: dict[str, np.ndarray], step: int = 1000):
  """bert/* + `extra` (+ Adam slots, global_step) with the TF1 Saver, and bert_config.json."""
  graph = tf.Graph()
  with graph.as_default():
    variables = {}
    for name, value in {**_encoder_tensors(), **extra}.items():
      variables[name] = tf.compat.v1.get_variable(name, initializer=tf.constant(value))
      for slot in ("adam_m", "adam_v"):
        variables[f"{name}/{slot}"] = tf.compat.v1.get_variable(
            f"{name}/{slot}", initializer=tf.constant(np.zeros_like(value)))
    variables["global_step"] = tf.compat.v1.train.get_or_create_global_step()
    saver = tf.compat.v1.train.Saver(var_list=variables)
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      saver.save(sess, str(directory / "model.ckpt"), global_step=step)
  CONFIG.to_json_file(directory / "bert_config.json")
  return directory


def _head(rows: int, cols: int = H, seed: int = 0):
  rng = np.random.default_rng(seed)
  return (rng.normal(0, 0.5, (rows, cols)).astype(np.float32),
          rng.normal(0, 0.5, (rows,)).astype(np.float32))


def _batch():
  rng = np.random.default_rng(1)
  ids = rng.integers(5, 120, (2, 12)).astype(np.int32)
  return ids, np.zeros_like(ids), np.ones_like(ids)


def _graft(module, pretrained, **init_kwargs):
  fresh = models.init_params(module, jax.random.key(0), **init_kwargs)
  return fresh, surgery.graft_encoder(fresh, pretrained, keep_fitting=tuple(
      k for k in fresh if k != "encoder"))


@pytest.fixture(scope="module")
def squad_ckpt(tmp_path_factory):
  w, b = _head(2)
  return write_tf1(tmp_path_factory.mktemp("squad"),
                   {"cls/squad/output_weights": w, "cls/squad/output_bias": b}), w, b


def test_biobert_squad_head_carries_over_into_qa_model(squad_ckpt):
  d, w, b = squad_ckpt
  config, pretrained, report = checkpoints.load_with_report(d)  # strict
  assert config == CONFIG
  assert not report.unused and not report.new
  assert "cls/squad/output_weights/adam_m" in report.ignored
  np.testing.assert_array_equal(pretrained["qa_outputs"]["kernel"], w.T)
  np.testing.assert_array_equal(pretrained["qa_outputs"]["bias"], b)
  module = models.BertForQuestionAnswering(config)
  _, (params, graft) = _graft(module, pretrained)
  assert {"qa_outputs/kernel", "qa_outputs/bias"} <= set(graft.loaded)
  assert not graft.unused and not graft.new
  ids, types, mask = _batch()
  start, end = module.apply({"params": params}, ids, types, mask)
  seq, _ = models.BertEncoder(config).apply({"params": params["encoder"]}, ids, types, mask)
  seq = np.asarray(seq)
  # run_squad: logits = h @ output_weights^T + output_bias; unstack -> (start, end).
  np.testing.assert_allclose(np.asarray(start), seq @ w[0] + b[0], atol=1e-4)
  np.testing.assert_allclose(np.asarray(end), seq @ w[1] + b[1], atol=1e-4)


def test_squad_head_is_unused_by_a_relation_model(squad_ckpt):
  d, _, _ = squad_ckpt
  _, pretrained = checkpoints.load(d)
  fresh, (params, graft) = _graft(
      models.BertForSequenceClassification(CONFIG, num_labels=2), pretrained)
  assert set(graft.unused) == {"qa_outputs/kernel", "qa_outputs/bias"}
  assert {"classifier/kernel", "classifier/bias"} <= set(graft.new)
  assert any("no such head" in n for n in graft.notes)
  np.testing.assert_array_equal(params["classifier"]["kernel"], fresh["classifier"]["kernel"])


@pytest.fixture(scope="module")
def run_re_ckpt(tmp_path_factory):
  w, b = _head(2, seed=4)  # BioBERT run_re on GAD: labels ["0", "1"]
  return write_tf1(tmp_path_factory.mktemp("run_re"),
                   {"output_weights": w, "output_bias": b}), w, b


def test_run_re_head_kept_when_labels_fit(run_re_ckpt):
  d, w, b = run_re_ckpt
  config, pretrained, report = checkpoints.load_with_report(d)
  assert not report.unused
  module = models.BertForSequenceClassification(config, num_labels=2, pooling="cls")
  _, (params, graft) = _graft(module, pretrained)
  assert {"classifier/kernel", "classifier/bias"} <= set(graft.loaded)
  ids, types, mask = _batch()
  logits = module.apply({"params": params}, ids, types, mask)
  _, pooled = models.BertEncoder(config).apply({"params": params["encoder"]}, ids, types, mask)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(pooled) @ w.T + b, atol=1e-4)
  # init_heads="fresh" (no keep_fitting): the fitting head is left behind, and says so.
  fresh = models.init_params(module, jax.random.key(0))
  params, graft = surgery.graft_encoder(fresh, pretrained)
  assert set(graft.unused) == {"classifier/kernel", "classifier/bias"}
  np.testing.assert_array_equal(params["classifier"]["kernel"], fresh["classifier"]["kernel"])


@pytest.mark.parametrize("num_labels,pooling", [(6, "cls"), (2, "entity_start")])
def test_run_re_head_unused_when_it_does_not_fit(run_re_ckpt, num_labels, pooling):
  d, _, _ = run_re_ckpt
  _, pretrained = checkpoints.load(d)
  module = models.BertForSequenceClassification(CONFIG, num_labels=num_labels, pooling=pooling)
  fresh, (params, graft) = _graft(module, pretrained)
  # Never half-copied: with entity_start the bias [2] would fit, the kernel [2H, 2] not.
  assert set(graft.unused) == {"classifier/kernel", "classifier/bias"}
  assert graft.unused["classifier/kernel"] == [H, 2]
  assert {"classifier/kernel", "classifier/bias"} <= set(graft.new)
  np.testing.assert_array_equal(params["classifier"]["bias"], fresh["classifier"]["bias"])
  assert any("other labels or pooling" in n for n in graft.notes)


def test_run_ner_head_fits_token_classification(tmp_path):
  # BioBERT run_ner: ["[PAD]", "B", "I", "O", "X", "[CLS]", "[SEP]"] -> 7 rows.
  w, b = _head(7, seed=5)
  d = write_tf1(tmp_path, {"output_weights": w, "output_bias": b})
  _, pretrained = checkpoints.load(d)
  _, (params, graft) = _graft(models.BertForTokenClassification(CONFIG, num_labels=7),
                              pretrained)
  assert "classifier/kernel" in graft.loaded
  np.testing.assert_array_equal(params["classifier"]["kernel"], w.T)
  _, (_, graft3) = _graft(models.BertForTokenClassification(CONFIG, num_labels=3), pretrained)
  assert set(graft3.unused) == {"classifier/kernel", "classifier/bias"}


def test_head_of_another_hidden_size_is_reported_unused_at_load(tmp_path):
  w, b = _head(2, cols=H + 8)
  d = write_tf1(tmp_path, {"cls/squad/output_weights": w, "cls/squad/output_bias": b})
  _, pretrained, report = checkpoints.load_with_report(d)  # strict on the encoder still
  assert "qa_outputs" not in pretrained
  assert set(report.unused) == {"cls/squad/output_weights", "cls/squad/output_bias"}
  assert any("hidden_size" in n for n in report.notes)


def test_encoder_stays_strict_with_a_head(tmp_path):
  w, b = _head(2)
  d = write_tf1(tmp_path, {"output_weights": w, "output_bias": b,
                           "some_scope/unknown_variable": np.zeros((3,), np.float32)})
  with pytest.raises(CheckpointError, match="unexpected in the checkpoint:\n  "
                     "some_scope/unknown_variable"):
    checkpoints.load(d)
  _, pretrained, report = checkpoints.load_with_report(d, strict=False)
  assert report.unused == ["some_scope/unknown_variable"]
  np.testing.assert_array_equal(pretrained["classifier"]["bias"], b)


def test_pretraining_and_squad_heads_together(tmp_path):
  """BioBERT+SQuAD released with the MLM/NSP heads still in it loads both kinds."""
  rng = np.random.default_rng(6)
  extra = {"cls/predictions/transform/dense/kernel": rng.normal(size=(H, H)),
           "cls/predictions/transform/dense/bias": rng.normal(size=(H,)),
           "cls/predictions/transform/LayerNorm/gamma": np.ones(H),
           "cls/predictions/transform/LayerNorm/beta": np.zeros(H),
           "cls/predictions/output_bias": np.zeros(CONFIG.vocab_size),
           "cls/seq_relationship/output_weights": rng.normal(size=(2, H)),
           "cls/seq_relationship/output_bias": np.zeros(2)}
  w, b = _head(2)
  extra = {k: np.asarray(v, np.float32) for k, v in extra.items()}
  d = write_tf1(tmp_path, {**extra, "cls/squad/output_weights": w, "cls/squad/output_bias": b})
  _, pretrained, report = checkpoints.load_with_report(d)
  assert not report.unused and not report.new
  assert {"encoder", "cls", "qa_outputs"} == set(pretrained)
  _, (_, graft) = _graft(models.BertForQuestionAnswering(CONFIG), pretrained)
  assert "qa_outputs/kernel" in graft.loaded and "cls/predictions/output_bias" in graft.dropped
  assert not graft.unused
