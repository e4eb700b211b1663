"""The smaller guards: predict checks its output first and shows progress, clear one-line
errors for absurd sizes, a word when fine-tuning shrinks the batch, a checkpoint of
another model named as such."""
import json

import jax
import numpy as np
import pytest

from biobert_jax.checkpoints.manager import CheckpointManager
from biobert_jax.config import BertConfig
from biobert_jax.trainers import predict
from data_pipeline.errors import InputError

from test_predict import _model_dir  # noqa: F401  # a tiny NER model over MiniLM's vocab


@pytest.fixture(scope="module")
def ner_workdir(tmp_path_factory, minilm_dir):
  return _model_dir(tmp_path_factory.mktemp("ner"), minilm_dir, 1)


def test_predict_checks_the_output_before_loading_the_model(tmp_path):
  source = tmp_path / "in.txt"
  source.write_text("Breast cancer.\n")
  missing_model = str(tmp_path / "no_model")
  with pytest.raises(InputError, match="cannot write there") as error:
    predict.predict_file("ner", missing_model, str(source), str(tmp_path / "no/dir/o.jsonl"))
  assert "\n" not in str(error.value)
  with pytest.raises(InputError, match="is a directory"):
    predict.predict_file("ner", missing_model, str(source), str(tmp_path))


def test_predict_reports_progress_and_chunks_give_the_same_output(tmp_path, ner_workdir):
  source = tmp_path / "in.txt"
  source.write_text("".join(f"Breast cancer number {i}.\n" for i in range(5)))
  lines = []
  n = predict.predict_file("ner", str(ner_workdir), str(source), str(tmp_path / "a.jsonl"),
                           chunk=2, log_every_s=1e-9, log=lines.append)
  assert n == 5 and len(lines) == 2  # after records 2 and 4 (none after the last)
  assert lines[0].startswith("predict: 2/5 records") and "ETA" in lines[0]
  predict.predict_file("ner", str(ner_workdir), str(source), str(tmp_path / "b.jsonl"),
                       chunk=1000)
  assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
  assert not list(tmp_path.glob("*.partial*"))


def test_absurd_hf_vocab_size_is_one_line_naming_file_and_key(tmp_path):
  path = tmp_path / "config.json"
  path.write_text(json.dumps({"vocab_size": 10**20, "hidden_size": 32,
                              "num_hidden_layers": 1, "num_attention_heads": 2,
                              "intermediate_size": 64}))
  with pytest.raises(ValueError) as error:
    BertConfig.from_json_file(path)
  message = str(error.value)
  assert str(path) in message and "vocab_size" in message and "\n" not in message


def test_create_pretraining_data_rejects_bad_mask_settings(tmp_path):
  from data_pipeline import pretraining
  from data_pipeline.pretraining.static_writer import write_static_examples
  config = pretraining.default_config()
  config.max_predictions_per_seq = -1
  with pytest.raises(ValueError, match="max_predictions_per_seq must be >= 1, got -1"):
    write_static_examples(config, str(tmp_path / "x-{shard}-{num_shards}"))
  assert not list(tmp_path.iterdir())


def test_restoring_another_models_checkpoint_is_one_line(tmp_path):
  manager = CheckpointManager(tmp_path, async_save=False)
  manager.save(1, {"w": np.ones((4, 4), np.float32)})
  manager.close()
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = {"w": jax.ShapeDtypeStruct((8, 4), np.float32, sharding=sharding)}
  manager = CheckpointManager(tmp_path, read_only=True)
  with pytest.raises(ValueError, match="step 1 holds another model") as error:
    manager.restore(1, target)
  assert "\n" not in str(error.value)
  manager.close()
  assert (tmp_path / "1").is_dir()  # not "damaged": nothing set aside


def test_finetune_says_when_it_shrinks_the_batch(tmp_path, data_dir, capsys):
  from test_finetune_trainer import FAST, _config
  vocab = tmp_path / "vocab.txt"
  chars = "abcdefghijklmnopqrstuvwxyz0123456789.,;:()[]-/'\"%+=<>?!&*_"
  vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars,
                              *(f"##{c}" for c in chars)]) + "\n")
  from biobert_jax.trainers import finetune as finetune_lib
  config = _config("ner", data_dir, str(vocab), batch_size=64, num_epochs=1,
                   max_train_examples=2, eval_every_epoch=False)
  finetune_lib.run(config, str(tmp_path / "w"), compiler_options=FAST,
                   devices=jax.devices()[:1])
  out = capsys.readouterr().out
  assert "batch_size reduced from 64 to" in out and "the training set has only" in out
