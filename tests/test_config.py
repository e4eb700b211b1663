"""BertConfig: presets, JSON round trips (Google and HF files), validation messages."""
import json

import pytest

from biobert_jax import BertConfig

GOOGLE_BASE_CASED = {  # Google's bert_config.json for BERT-base cased (BioBERT v1.1)
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
    "type_vocab_size": 2, "vocab_size": 28996}


def test_google_json_equals_base_preset(tmp_path):
  path = tmp_path / "bert_config.json"
  path.write_text(json.dumps(GOOGLE_BASE_CASED))
  config = BertConfig.from_json_file(path)
  assert config == BertConfig.preset("base")
  assert config.layer_norm_eps == 1e-12 and config.head_dim == 64


def test_hf_config_json_ignores_hf_keys(minilm_dir):
  config = BertConfig.from_json_file(minilm_dir / "config.json")
  raw = json.loads((minilm_dir / "config.json").read_text())
  assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (384, 6, 12)
  assert config.vocab_size == raw["vocab_size"] == 30522
  assert config.layer_norm_eps == raw["layer_norm_eps"]


def test_hf_layer_norm_eps_is_mapped(tmp_path):
  d = dict(GOOGLE_BASE_CASED, layer_norm_eps=1e-5, model_type="bert", architectures=["BertModel"],
           transformers_version="4.57.6", pad_token_id=0)
  (tmp_path / "config.json").write_text(json.dumps(d))
  assert BertConfig.from_json_file(tmp_path / "config.json").layer_norm_eps == 1e-5


@pytest.mark.parametrize("hf", [False, True])
def test_json_round_trip(tmp_path, hf):
  config = BertConfig.preset("small", vocab_size=1234, hidden_act="gelu_new", layer_norm_eps=1e-6)
  config.to_json_file(tmp_path / "c.json", hf=hf)
  assert BertConfig.from_json_file(tmp_path / "c.json") == config
  if hf:
    assert json.loads((tmp_path / "c.json").read_text())["model_type"] == "bert"


@pytest.mark.parametrize("name,layers,hidden,heads", [
    ("tiny", 2, 128, 2), ("mini", 4, 256, 4), ("small", 4, 512, 8), ("medium", 8, 512, 8),
    ("base", 12, 768, 12), ("large", 24, 1024, 16)])
def test_presets(name, layers, hidden, heads):
  c = BertConfig.preset(name)
  assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads) == (layers, hidden, heads)
  assert c.intermediate_size == 4 * hidden and c.vocab_size == 28996


def test_unknown_preset_lists_valid_ones():
  with pytest.raises(ValueError, match="huge.*tiny, mini, small, medium, base, large"):
    BertConfig.preset("huge")


@pytest.mark.parametrize("changes,message", [
    (dict(hidden_size=100, num_attention_heads=12), "hidden_size \\(100\\) is not divisible"),
    (dict(vocab_size=0), "vocab_size must be a positive integer"),
    (dict(num_hidden_layers=-1), "num_hidden_layers must be a positive integer"),
    (dict(hidden_act="swish"), "hidden_act 'swish' is unknown; valid: gelu"),
    (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob must be in"),
])
def test_validation_messages(changes, message):
  with pytest.raises(ValueError, match=message):
    BertConfig.preset("tiny").replace(**changes)


def test_unknown_key_names_file(tmp_path):
  path = tmp_path / "bert_config.json"
  path.write_text(json.dumps(dict(GOOGLE_BASE_CASED, hiden_size=3)))
  with pytest.raises(ValueError,
                     match="bert_config.json: unknown BERT config keys \\['hiden_size'\\]"):
    BertConfig.from_json_file(path)


def test_frozen_and_replace():
  c = BertConfig.preset("tiny")
  with pytest.raises(AttributeError):
    c.hidden_size = 3  # type: ignore[misc]
  assert c.replace(vocab_size=10).vocab_size == 10 and c.vocab_size == 28996
  assert BertConfig(**c.to_dict()) == c
