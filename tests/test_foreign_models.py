"""Model directories written elsewhere used directly by predict / annotate / export:
a BioBERT-style TF1 fine-tuned NER checkpoint with its labels.txt."""
import json

import numpy as np
import pytest

from biobert_jax.trainers import predict
from biobert_jax.trainers import annotate, hf_export
from biobert_jax.trainers import model_dir as model_dir_lib
from test_checkpoint_heads import CONFIG, H, write_tf1

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(97, 123)] + [
    f"##{chr(c)}" for c in range(97, 123)]
VOCAB += [f"w{i}" for i in range(CONFIG.vocab_size - len(VOCAB))]
LABELS = ["O", "B-Disease", "I-Disease"]


@pytest.fixture(scope="module")
def tf1_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("tf1_ner")
  w = np.zeros((3, H), np.float32)
  b = np.array([0.0, 3.0, 0.0], np.float32)  # every word B-Disease
  write_tf1(d, {"output_weights": w, "output_bias": b})
  (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
  (d / "labels.txt").write_text("\n".join(LABELS) + "\n")
  return d


def test_tf1_checkpoint_with_labels_is_a_model_directory(tf1_dir, tmp_path):
  loaded = model_dir_lib.load_finetuned(tf1_dir)
  assert loaded.info["task"] == "ner" and loaded.info["labels"] == LABELS
  assert loaded.info["lowercase"] is True  # the vocabulary is uncased
  entities = predict.tag_texts(tf1_dir, ["ab cd, ef"])[0]
  assert [(e["type"], e["text"]) for e in entities] == [
      ("Disease", "ab"), ("Disease", "cd"), ("Disease", ","), ("Disease", "ef")]
  (tmp_path / "in.txt").write_text("ab cd\n")
  summary = annotate.annotate([str(tf1_dir)], str(tmp_path / "in.txt"), str(tmp_path / "out"),
                              log_every_s=1e9)
  assert summary["entities_total"] == 2
  # ... and exports to transformers like a model fine-tuned here.
  hf_export.export_model_dir(tf1_dir, tmp_path / "hf")
  config = json.loads((tmp_path / "hf" / "config.json").read_text())
  assert config["id2label"] == {"0": "O", "1": "B-Disease", "2": "I-Disease"}


def test_tf1_checkpoint_without_labels_says_what_is_missing(tmp_path):
  write_tf1(tmp_path, {"output_weights": np.zeros((3, H), np.float32),
                       "output_bias": np.zeros((3,), np.float32)})
  (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
  with pytest.raises(FileNotFoundError, match="labels.txt not found"):
    model_dir_lib.load_finetuned(tmp_path)
  (tmp_path / "labels.txt").write_text("O\nB-Disease\n")
  with pytest.raises(ValueError, match="2 labels but the checkpoint's output_weights has 3"):
    model_dir_lib.load_finetuned(tmp_path)
