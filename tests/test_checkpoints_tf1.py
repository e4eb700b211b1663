"""TF1 checkpoints with Google's variable names (+ Adam slots and global_step), built in
TensorFlow inside the test from transformers' weights; outputs must match transformers."""
import functools
import re

import jax
import numpy as np
import pytest
import torch
import transformers

from biobert_jax import BertConfig, checkpoints, models
from biobert_jax.checkpoints import CheckpointError
from data_pipeline._tf import tf

HF_CONFIG = dict(vocab_size=150, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=96, max_position_embeddings=64, hidden_act="gelu")


def google_name(hf_name: str) -> tuple[str, bool]:
  """(Google TF1 variable name, whether TF stores the transpose of the torch tensor).

  Written from Google's modeling.py scopes, independently of biobert_jax's rename table.
  """
  fixed = {"cls.predictions.bias": ("cls/predictions/output_bias", False),
           "cls.seq_relationship.weight": ("cls/seq_relationship/output_weights", False),
           "cls.seq_relationship.bias": ("cls/seq_relationship/output_bias", False)}
  if hf_name in fixed:
    return fixed[hf_name]
  name = re.sub(r"^bert\.", "", hf_name)
  name = re.sub(r"layer\.(\d+)", r"layer_\1", name).replace(".", "/")
  if not name.startswith("cls/"):
    name = "bert/" + name
  if name.endswith("_embeddings/weight"):
    return name[: -len("/weight")], False
  if "LayerNorm" in name:
    return name.replace("/weight", "/gamma").replace("/bias", "/beta"), False
  if name.endswith("/weight"):
    return name[: -len("/weight")] + "/kernel", True
  return name, False


def write_google_checkpoint(state: dict, directory, steps=(7,), with_optimizer=True):
  """Saves `state` (HF name -> array) under Google's names with tf.compat.v1 Saver."""
  graph = tf.Graph()
  with graph.as_default():
    variables = {}
    for hf_name, array in state.items():
      name, transpose = google_name(hf_name)
      value = array.T if transpose else array
      variables[name] = tf.compat.v1.get_variable(name, initializer=tf.constant(value))
      if with_optimizer:  # BERT's AdamWeightDecayOptimizer slots
        for slot in ("adam_m", "adam_v"):
          variables[f"{name}/{slot}"] = tf.compat.v1.get_variable(
              f"{name}/{slot}", initializer=tf.constant(np.full_like(value, 0.5)))
    step = tf.compat.v1.train.get_or_create_global_step()
    variables["global_step"] = step
    saver = tf.compat.v1.train.Saver(var_list=variables)
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      for s in steps:
        saver.save(sess, str(directory / "model.ckpt"), global_step=s)


@pytest.fixture(scope="module")
def google_ckpt(tmp_path_factory):
  torch.manual_seed(0)
  model = transformers.BertForPreTraining(transformers.BertConfig(**HF_CONFIG)).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bias") or "LayerNorm" in name:
        p.add_(0.1 * torch.randn_like(p))
  state = {k: v.numpy() for k, v in model.state_dict().items()
           if "position_ids" not in k and "decoder" not in k}
  d = tmp_path_factory.mktemp("google")
  write_google_checkpoint(state, d, steps=(5, 10))
  BertConfig(**HF_CONFIG).to_json_file(d / "bert_config.json")
  return d, model


@functools.partial(jax.jit, static_argnums=0)
def _apply(module, params, *args):
  return module.apply({"params": params}, *args)


def _batch():
  rng = np.random.default_rng(0)
  ids = rng.integers(5, 150, (2, 20)).astype(np.int32)
  types = (np.arange(20)[None] > 9).astype(np.int32).repeat(2, 0)
  mask = np.ones_like(ids)
  mask[1, 15:] = 0
  return ids, types, mask, np.array([[1, 4, 12], [2, 9, 14]], np.int32)


def test_google_checkpoint_matches_transformers(google_ckpt):
  d, model = google_ckpt
  config, params, report = checkpoints.load_with_report(d)  # the directory: latest step
  assert report.format == "tf1" and report.path.endswith("model.ckpt-10")
  assert "global_step" in report.ignored
  assert "bert/encoder/layer_1/output/dense/kernel/adam_v" in report.ignored
  assert not report.unused and not report.new
  ids, types, mask, positions = _batch()
  mlm, nsp = _apply(models.BertForPreTraining(config), params, ids, types, mask, positions)
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                token_type_ids=torch.tensor(types, dtype=torch.long),
                attention_mask=torch.tensor(mask, dtype=torch.long))
  ref_mlm = np.take_along_axis(out.prediction_logits.numpy(), positions[..., None], axis=1)
  assert np.abs(np.asarray(mlm) - ref_mlm).max() <= 1e-4
  assert np.abs(np.asarray(nsp) - out.seq_relationship_logits.numpy()).max() <= 1e-4


def test_prefix_path_and_export_round_trip(google_ckpt, tmp_path):
  d, _ = google_ckpt
  config, params = checkpoints.load(d / "model.ckpt-5")  # an explicit prefix
  prefix = checkpoints.export_tf1(config, params, tmp_path / "out" / "model.ckpt-1")
  exported = dict(tf.train.list_variables(str(prefix)))
  original = {n: s for n, s in tf.train.list_variables(str(d / "model.ckpt-5"))
              if not n.endswith(("adam_m", "adam_v")) and n != "global_step"}
  assert exported == original  # same Google names, same shapes (e.g. output_weights [2, H])
  assert tf.train.latest_checkpoint(str(tmp_path / "out")).endswith("model.ckpt-1")
  config2, back = checkpoints.load(tmp_path / "out")
  assert config2 == config
  jax.tree.map(np.testing.assert_array_equal, back, params)


def test_missing_variable_and_missing_config(tmp_path):
  state = {"embeddings.word_embeddings.weight": np.zeros((150, 48), np.float32)}
  write_google_checkpoint(state, tmp_path, with_optimizer=False)
  with pytest.raises(CheckpointError, match="no bert_config.json"):
    checkpoints.load(tmp_path)
  BertConfig(**HF_CONFIG).to_json_file(tmp_path / "bert_config.json")
  with pytest.raises(CheckpointError, match=(
      r"(?s)missing from the checkpoint:.*encoder/embeddings/position_embeddings/embedding "
      r"\(tf name bert/embeddings/position_embeddings\): config \[64, 48\]")):
    checkpoints.load(tmp_path)
