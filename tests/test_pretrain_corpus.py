"""End to end on the shared PubMed text: the tiny preset learns, evaluates, exports; a
second run continues from that export (--config.init_checkpoint)."""
import jax
import numpy as np
import pytest

from biobert_jax import models
from biobert_jax.checkpoints import native
from biobert_jax.train.metrics_writer import read_jsonl
from biobert_jax.trainers import pretrain

from _pretrain_util import tiny_bert_config, tiny_run_config

STEPS = 60


@pytest.fixture(scope="module")
def pubmed_run(data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("pubmed")
  config = tiny_run_config(
      data_dir, data_source="corpus", hidden_size=0, num_layers=0, num_heads=0,  # preset
      train_files=str(data_dir / "pretrain" / "pubmed_abstracts.txt"),
      batch_size=16, max_seq_length=64, max_predictions_per_seq=10, total_steps=STEPS,
      log_every=5, checkpoint_every=STEPS,
      eval_every=30, eval_steps=2, tensorboard=True, **{
          "optim.learning_rate": 2e-3, "optim.warmup_steps": 5,
          "mesh.data": 1, "mesh.fsdp": -1, "mesh.tensor": 1, "data.shuffle_buffer": 500,
          "data.holdout_every": 10})
  result = pretrain.train(config, str(workdir))
  return workdir, result


@pytest.mark.slow
def test_tiny_preset_loss_goes_down_on_pubmed(pubmed_run):
  workdir, result = pubmed_run
  assert result.final_step == STEPS and not result.preempted
  rows = read_jsonl(str(workdir / "metrics.jsonl"))
  assert [r["step"] for r in rows] == list(range(5, STEPS + 1, 5))
  first, last = rows[0]["mlm_loss"], rows[-1]["mlm_loss"]
  assert first > 9.0  # ~ln(28996) at random init
  assert last < first - 2.0, [r["mlm_loss"] for r in rows]
  assert all(r["tokens_per_sec"] > 0 for r in rows)
  evals = read_jsonl(str(workdir / "eval_metrics.jsonl"))
  assert [r["step"] for r in evals] == [30, 60]
  assert evals[-1]["eval_mlm_loss"] < first - 2.0
  assert any((workdir / "tensorboard").iterdir())
  config = native.load_native(workdir / "export")[0]
  assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (128, 2, 28996)
  assert (workdir / "export" / "vocab.txt").read_text() == (
      workdir / "vocab.txt").read_text()


@pytest.mark.slow
def test_init_checkpoint_continues_from_an_export(pubmed_run, data_dir, tmp_path):
  workdir, _ = pubmed_run
  config = tiny_run_config(
      data_dir, init_checkpoint=str(workdir / "export"), total_steps=1,
      max_seq_length=64, max_predictions_per_seq=10, **{"optim.learning_rate": 0.0,
                                                           "mesh.data": 1, "mesh.fsdp": -1,
                                                           "mesh.tensor": 1})
  pretrain.train(config, str(tmp_path / "continued"))
  before = native.load_native(workdir / "export")[1]
  after = native.load_native(tmp_path / "continued" / "export")[1]
  assert jax.tree.structure(before) == jax.tree.structure(after)
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(a, b)

  # A checkpoint with another vocabulary is refused, naming both sizes.
  small = tiny_bert_config()
  native.save_native(small, jax.device_get(models.init_params(
      models.BertForPreTraining(small), jax.random.PRNGKey(0))), tmp_path / "other_vocab")
  config.init_checkpoint = str(tmp_path / "other_vocab")
  with pytest.raises(ValueError, match="vocab_size 300 does not match.*28996"):
    pretrain.train(config, str(tmp_path / "refused"))
