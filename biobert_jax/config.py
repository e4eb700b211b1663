"""BERT model configuration: Google's bert_config.json fields plus `layer_norm_eps`, read from
and written to bert_config.json or HF config.json, validated at construction.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from biobert_jax import fs

# Activation names accepted in `hidden_act`. "gelu" is the exact erf form used by Google's
# BERT and HF's "gelu"; "gelu_new" (HF) and "gelu_approx" are the tanh approximation.
HIDDEN_ACTS = ("gelu", "gelu_new", "gelu_approx", "relu")

# BioBERT v1.1 uses the BERT-base *cased* vocabulary (28,996 pieces).
DEFAULT_VOCAB_SIZE = 28996
_MAX_DIM = 2**31 - 1  # int32: XLA's array dimensions and token ids

# name -> (num_hidden_layers, hidden_size, num_attention_heads); intermediate = 4 * hidden.
_PRESETS = {
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "medium": (8, 512, 8),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}

# HF config.json keys that have no meaning for this model (ignored on read).
_HF_ONLY_KEYS = frozenset({
    "architectures", "model_type", "transformers_version", "_name_or_path", "torch_dtype",
    "dtype", "pad_token_id", "position_embedding_type", "use_cache", "gradient_checkpointing",
    "classifier_dropout", "output_past", "directionality", "pooler_fc_size",
    "pooler_num_attention_heads", "pooler_num_fc_layers", "pooler_size_per_head",
    "pooler_type", "id2label", "label2id", "finetuning_task", "is_decoder",
    "add_cross_attention", "tie_word_embeddings", "bos_token_id", "eos_token_id",
    "problem_type",
})


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Hyper-parameters of a BERT encoder (the fields of Google's bert_config.json)."""

  vocab_size: int = DEFAULT_VOCAB_SIZE
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12

  def __post_init__(self):
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"BertConfig.{name} must be a positive integer, got {value!r}")
      if value > _MAX_DIM:  # beyond any BERT; larger overflows array shapes inside jit
        raise ValueError(f"BertConfig.{name} = {value} is absurdly large (at most "
                         f"{_MAX_DIM})")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
          f"BertConfig.hidden_size ({self.hidden_size}) is not divisible by "
          f"num_attention_heads ({self.num_attention_heads})")
    if self.hidden_act not in HIDDEN_ACTS:
      raise ValueError(
          f"BertConfig.hidden_act {self.hidden_act!r} is unknown; valid: {', '.join(HIDDEN_ACTS)}")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ValueError(f"BertConfig.{name} must be in [0, 1), got {value!r}")
    if self.initializer_range <= 0:
      raise ValueError(f"BertConfig.initializer_range must be > 0, got {self.initializer_range}")
    if self.layer_norm_eps <= 0:
      raise ValueError(f"BertConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps}")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  # ---- construction -------------------------------------------------------------------------
  @classmethod
  def preset(cls, name: str, **overrides: Any) -> BertConfig:
    """A standard BERT size (tiny, mini, small, medium, base, large); `overrides` replace fields."""
    if name not in _PRESETS:
      raise ValueError(f"unknown BertConfig preset {name!r}; valid presets: {', '.join(_PRESETS)}")
    layers, hidden, heads = _PRESETS[name]
    fields = dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                  intermediate_size=4 * hidden)
    fields.update(overrides)
    return cls(**fields)

  @classmethod
  def preset_names(cls) -> tuple[str, ...]:
    return tuple(_PRESETS)

  @classmethod
  def from_dict(cls, d: dict[str, Any], *, source: str = "<dict>") -> BertConfig:
    """Builds a config from a Google or HF dict; HF-only keys are ignored, unknown keys fail."""
    known = {f.name for f in dataclasses.fields(cls)}
    fields, unknown = {}, []
    for key, value in d.items():
      if key in known:
        fields[key] = value
      elif key == "layer_norm_epsilon":  # spelling used by some converters
        fields["layer_norm_eps"] = value
      elif key not in _HF_ONLY_KEYS and not key.startswith("_"):
        unknown.append(key)
    if unknown:
      raise ValueError(f"{source}: unknown BERT config keys {sorted(unknown)}")
    if d.get("position_embedding_type", "absolute") != "absolute":
      raise ValueError(f"{source}: position_embedding_type "
                       f"{d['position_embedding_type']!r} is not supported (only 'absolute')")
    try:
      return cls(**fields)
    except (TypeError, ValueError) as e:
      raise ValueError(f"{source}: {e}") from e

  @classmethod
  def from_json_file(cls, path: str | os.PathLike) -> BertConfig:
    """Reads Google's bert_config.json or a HF config.json."""
    with fs.open(path, encoding="utf-8") as f:
      try:
        d = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    return cls.from_dict(d, source=str(path))

  # ---- export -------------------------------------------------------------------------------
  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_hf_dict(self, architectures: tuple[str, ...] = ("BertModel",)) -> dict[str, Any]:
    """The HF `config.json` content for this config."""
    d = self.to_dict()
    d.update(model_type="bert", architectures=list(architectures), pad_token_id=0,
             position_embedding_type="absolute")
    return d

  def to_json_file(self, path: str | os.PathLike, *, hf: bool = False) -> None:
    d = self.to_hf_dict() if hf else self.to_dict()
    with fs.open(path, "w", encoding="utf-8") as f:
      json.dump(d, f, indent=2, sort_keys=True)
      f.write("\n")

  def replace(self, **changes: Any) -> BertConfig:
    return dataclasses.replace(self, **changes)
