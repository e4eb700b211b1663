"""Configs are checked before any work, with one line naming key, value and rule; empty dev
splits are decided before training."""
from __future__ import annotations

import json
import pathlib

import jax
import pytest

from biobert_jax.checkpoints import native
from biobert_jax.configs.overrides import set_dotted
from biobert_jax.configs import finetune as finetune_configs
from biobert_jax.configs import pretrain as pretrain_configs
from biobert_jax.trainers import pretrain_data, validation
from data_pipeline import pretraining

REPO = pathlib.Path(__file__).resolve().parent.parent
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "gene", "cancer", "a", "b",
         "##s", "."]


# ---- configs checked first


@pytest.mark.parametrize("key,value,message", [
    ("batch_size", -4, "config.batch_size=-4: must be an integer >= 1"),
    ("batch_size", 0, "config.batch_size=0: must be an integer >= 1"),
    ("optim.learning_rate", -1e-4, "config.optim.learning_rate=-0.0001: must be >= 0"),
    ("total_steps", 0, "config.total_steps=0"),
    ("dtype", "fp8", "config.dtype='fp8': must be one of 'bfloat16', 'float16', 'float32'"),
    ("optim.optimizer", "sgd",
     "config.optim.optimizer='sgd': must be one of 'adamw', 'lamb'"),
    ("data.file_format", "csv", "config.data.file_format='csv'"),
    ("data.masked_lm_prob", 1.5, "config.data.masked_lm_prob=1.5"),
    ("mesh.data", 3, "config.mesh: mesh"),
    ("max_predictions_per_seq", 200, "must be <= max_seq_length"),
    ("nsp_weight", -1.0, "config.nsp_weight=-1.0: must be >= 0"),
    ("train_files", "/no/such/*.txt", "no file matches '/no/such/*.txt'"),
])
def test_pretrain_config_errors_name_key_value_and_rule(key, value, message):
  config = pretrain_configs.get_config("tiny")
  set_dotted(config, key, value)
  with pytest.raises(validation.ConfigError) as error:
    pretrain_configs.validate(config)
  assert message in str(error.value)


def test_pretrain_data_keys_reach_the_pipeline():
  # Every trainer `data.*` key is a pipeline setting, and a change reaches the pipeline
  # (whole-word masking was settable in the pipeline but not from a trainer config).
  config = pretrain_configs.get_config("tiny")
  assert set(config.data) <= set(pretraining.default_config())
  config.data.whole_word_masking = True
  assert pretrain_data.pipeline_config(config, 1).whole_word_masking is True


def test_pretrain_refuses_a_negative_batch_before_any_work(tmp_path):
  from biobert_jax.trainers import pretrain
  config = pretrain_configs.get_config("tiny")
  config.batch_size = -4
  with pytest.raises(validation.ConfigError, match="config.batch_size=-4"):
    pretrain.train(config, str(tmp_path / "work"))
  assert not (tmp_path / "work").exists()


def test_pretrain_positions_checked_against_init_checkpoint(tmp_path):
  (tmp_path / "bert_config.json").write_text(json.dumps({"max_position_embeddings": 128}))
  config = pretrain_configs.get_config("tiny")
  config.update(init_checkpoint=str(tmp_path), max_seq_length=512)
  with pytest.raises(validation.ConfigError, match=r"max_seq_length=512: .*128 position"):
    pretrain_configs.validate(config)


def test_pretrain_batch_must_divide_over_the_mesh():
  config = pretrain_configs.get_config("tiny")
  config.update(batch_size=6)
  config.mesh.update(data=1, fsdp=4, tensor=1)
  with pytest.raises(validation.ConfigError, match=r"batch_size=6: .*= 1 x 4 x 1 = 4"):
    pretrain_configs.validate(config, device_count=4, process_count=1)


@pytest.mark.parametrize("task,key,value,message", [
    ("ner", "batch_size", -4, "config.batch_size=-4: must be an integer >= 1"),
    ("ner", "batch_size", 0, "config.batch_size=0"),
    ("ner", "num_epochs", 0, "config.num_epochs=0"),
    ("ner", "optim.learning_rate", float("nan"),
     "config.optim.learning_rate=nan: must be finite"),
    ("ner", "ner.scheme", "bio", "config.ner.scheme='bio': must be one of 'iob2'"),
    ("re", "re.pooling", "mean", "config.re.pooling='mean'"),
    ("re", "re.dev_fraction", 1.0, "config.re.dev_fraction=1.0"),
    ("qa", "qa.merge", "avg", "config.qa.merge='avg'"),
    ("qa", "max_seq_length", 40, "qa.max_query_length + 4 = 68"),
    ("ner", "task", "pos", "config.task='pos': must be one of 'ner', 're', 'qa'"),
    ("ner", "optim.warmup_proportion", 1.5, "config.optim.warmup_proportion=1.5"),
])
def test_finetune_config_errors_name_key_value_and_rule(task, key, value, message):
  config = finetune_configs.get_config(task)
  set_dotted(config, key, value)
  with pytest.raises(validation.ConfigError) as error:
    finetune_configs.validate(config)
  assert message in str(error.value)


def test_shipped_configs_validate():
  for preset in ("tiny", "base", "large"):
    pretrain_configs.validate(pretrain_configs.get_config(preset), device_count=8,
                                        process_count=1)
  for task in ("ner", "re", "qa"):
    finetune_configs.validate(finetune_configs.get_config(task))


def test_finetune_refuses_a_negative_batch_before_any_work(tmp_path):
  from biobert_jax.trainers import finetune
  config = finetune_configs.get_config("ner")
  config.batch_size = -4
  with pytest.raises(validation.ConfigError, match="config.batch_size=-4"):
    finetune.run(config, str(tmp_path / "work"))
  assert not (tmp_path / "work").exists()


# ---- empty splits


class _Split:
  def __init__(self, n):
    self.num_features = n


def test_empty_dev_split_means_no_selection_stated():
  config = finetune_configs.get_config("ner")
  splits = {"train": _Split(4), "dev": _Split(0), "test": _Split(3)}
  notes = validation.check_splits(splits, config)
  assert sorted(splits) == ["test", "train"]
  assert notes["model_selection"].startswith("none: no dev split")
  assert "test_split" not in notes


def test_empty_dev_split_is_an_error_when_asked_for():
  config = finetune_configs.get_config("re")
  config.re.dev_fraction = 0.1
  with pytest.raises(validation.ConfigError, match=r"config.re.dev_fraction=0.1: asks for"):
    validation.check_splits({"train": _Split(4), "dev": _Split(0)}, config)
  with pytest.raises(validation.ConfigError, match="train split has no examples"):
    validation.check_splits({"train": _Split(0)}, finetune_configs.get_config("ner"))


def _ner_corpus(root: pathlib.Path, dev: str) -> None:
  sentence = "the\tO\ngene\tB-Gene\ncancer\tB-Disease\n.\tO\n"
  root.mkdir()
  (root / "train.tsv").write_text("\n".join([sentence] * 16))
  (root / "devel.tsv").write_text(dev)
  (root / "test.tsv").write_text("\n".join([sentence] * 2))


@pytest.mark.slow
def test_finetune_with_an_empty_dev_file_trains_and_says_so(tmp_path):
  """End to end: the run finishes, eval_results.json states there was no selection."""
  from biobert_jax.config import BertConfig
  from biobert_jax.models import BertForPreTraining, init_params
  from biobert_jax.trainers import finetune
  _ner_corpus(tmp_path / "ner", dev="")
  ckpt = tmp_path / "ckpt"
  bert = BertConfig.preset("tiny", vocab_size=len(VOCAB), hidden_size=32,
                           num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=32)
  native.save_native(bert, init_params(BertForPreTraining(bert), jax.random.key(0)), ckpt)
  (ckpt / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
  config = finetune_configs.get_config("ner")
  config.update(data_dir=str(tmp_path / "ner"), init_checkpoint=str(ckpt), num_epochs=1,
                batch_size=8, eval_batch_size=8, max_seq_length=16, doc_stride=8,
                bucket_length=0, group_by_length=0, log_every=1)
  results = finetune.run(config, str(tmp_path / "work"),
                         compiler_options={"xla_backend_optimization_level": 0})
  saved = json.loads((tmp_path / "work" / "eval_results.json").read_text())
  assert "dev" not in saved and "f1" in json.dumps(saved["test"])
  assert saved["model_selection"].startswith("none: no dev split")
  assert results["best_epoch"] == 1
