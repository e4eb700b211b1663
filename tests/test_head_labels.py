"""Label-safe head grafting: a checkpoint head is kept only in our label order.

BioBERT's ChemProt head orders its rows [CPR:3 ... CPR:9, false]; ours puts "false"
first. A TF1 checkpoint with its labels.txt, and a transformers directory whose id2label
is in another order, must arrive with their rows permuted to our order (logits equal the
checkpoint's, column for column by name); other label sets must stop; a head without
names is kept only with init_heads=fitting_unnamed.
"""
import jax
import numpy as np
import pytest

from biobert_jax import checkpoints, models
from biobert_jax.checkpoints import head_labels, hf_tasks, surgery
from biobert_jax.configs.checks import ConfigError
from biobert_jax.configs.finetune import validate as validate_finetune_config
from data_pipeline.tasks.re import CHEMPROT_LABELS
from test_checkpoint_heads import CONFIG, _batch, _head, write_tf1

BIOBERT_CHEMPROT = ["CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9", "false"]


def _graft(pretrained, labels, ckpt_labels, keep_unnamed=False):
  module = models.BertForSequenceClassification(CONFIG, num_labels=len(labels))
  fresh = models.init_params(module, jax.random.key(0))
  params, report = surgery.graft_encoder(
      fresh, pretrained, keep_fitting=("classifier",), head_labels={"classifier": labels},
      checkpoint_labels=ckpt_labels, keep_unnamed=keep_unnamed)
  return module, fresh, params, report


def _logits_by_name(module, params, labels):
  ids, types, mask = _batch()
  logits = np.asarray(module.apply({"params": params}, ids, types, mask))
  return {label: logits[:, i] for i, label in enumerate(labels)}


@pytest.fixture(scope="module")
def chemprot_tf1(tmp_path_factory):
  w, b = _head(6, seed=7)
  d = write_tf1(tmp_path_factory.mktemp("chemprot"), {"output_weights": w, "output_bias": b})
  (d / "labels.txt").write_text("\n".join(BIOBERT_CHEMPROT) + "\n")
  return d, w, b


def test_permuted_chemprot_tf1_head_arrives_in_our_order(chemprot_tf1):
  d, w, b = chemprot_tf1
  ours = list(CHEMPROT_LABELS)
  names = head_labels.checkpoint_labels(d)
  assert names == {"classifier": BIOBERT_CHEMPROT}
  _, pretrained = checkpoints.load(d)
  module, _, params, report = _graft(pretrained, ours, names)
  assert "classifier/kernel" in report.loaded
  assert any("permuted" in n and "'false'" in n for n in report.notes)
  got = _logits_by_name(module, params, ours)
  _, pooled = models.BertEncoder(CONFIG).apply({"params": params["encoder"]}, *_batch())
  for row, label in enumerate(BIOBERT_CHEMPROT):  # checkpoint row r is label r's logit
    np.testing.assert_allclose(got[label], np.asarray(pooled) @ w[row] + b[row], atol=1e-4)


def test_permuted_hf_head_arrives_in_our_order(tmp_path):
  theirs = ["B-Disease", "O", "I-Disease"]
  ours = ["O", "B-Disease", "I-Disease"]
  module = models.BertForTokenClassification(CONFIG, num_labels=3)
  source = models.init_params(module, jax.random.key(5))
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(115)]
  hf_tasks.export_task(tmp_path, config=CONFIG, params=source, task="ner", labels=theirs,
                       vocab=vocab, lowercase=False, max_length=64)
  names = head_labels.checkpoint_labels(tmp_path)
  assert names == {"classifier": theirs}
  _, pretrained = checkpoints.load(tmp_path)  # strict: only the absent pooler is fresh
  fresh = models.init_params(module, jax.random.key(0))
  params, report = surgery.graft_encoder(
      fresh, pretrained, keep_fitting=("classifier",), head_labels={"classifier": ours},
      checkpoint_labels=names)
  assert any("permuted" in n for n in report.notes)
  ids, types, mask = _batch()
  before = np.asarray(module.apply({"params": source}, ids, types, mask))
  after = np.asarray(module.apply({"params": params}, ids, types, mask))
  for i, label in enumerate(ours):
    np.testing.assert_allclose(after[..., i], before[..., theirs.index(label)], atol=1e-5)


def test_other_label_set_refuses_with_both_lists(chemprot_tf1):
  d, _, _ = chemprot_tf1
  _, pretrained = checkpoints.load(d)
  ours = ["false", "CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:10"]
  with pytest.raises(ValueError, match=r"has labels \['CPR:3'.*'false'\], the task has "
                     r"\['false', 'CPR:3'.*'CPR:10'\]"):
    _graft(pretrained, ours, head_labels.checkpoint_labels(d))


def test_unnamed_head_kept_only_with_fitting_unnamed(tmp_path):
  w, b = _head(2, seed=8)
  d = write_tf1(tmp_path, {"output_weights": w, "output_bias": b})  # no labels.txt
  assert head_labels.checkpoint_labels(d) == {}
  _, pretrained = checkpoints.load(d)
  _, fresh, params, report = _graft(pretrained, ["0", "1"], {})
  assert set(report.unused) == {"classifier/kernel", "classifier/bias"}
  assert any("no label names" in n and "fitting_unnamed" in n for n in report.notes)
  assert not any("kept:" in n for n in report.notes)
  np.testing.assert_array_equal(params["classifier"]["bias"], fresh["classifier"]["bias"])
  _, _, params, report = _graft(pretrained, ["0", "1"], {}, keep_unnamed=True)
  assert "classifier/bias" in report.loaded
  assert any("WITHOUT label names" in n for n in report.notes)
  np.testing.assert_array_equal(params["classifier"]["bias"], b)


def test_hf_default_label_names_count_as_none(tmp_path):
  (tmp_path / "config.json").write_text('{"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}')
  assert head_labels.checkpoint_labels(tmp_path) == {}


def test_config_validation_knows_fitting_unnamed():
  from biobert_jax.configs.finetune import get_config
  config = get_config("ner")
  config.init_checkpoint = ""
  config.init_heads = "fitting_unnamed"
  validate_finetune_config(config)
  config.init_heads = "fitting_named"
  with pytest.raises(ConfigError, match="init_heads"):
    validate_finetune_config(config)
