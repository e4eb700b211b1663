"""The fine-tuned model directory (`<workdir>/model/`: native checkpoint, vocab.txt,
task.json) and the vocabulary/casing resolution of the fine-tuning trainer."""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import TYPE_CHECKING, Any

from biobert_jax import fs
from biobert_jax.checkpoints import integrity, native
from biobert_jax.config import BertConfig
from biobert_jax.trainers import workdir as workdir_lib
from data_pipeline.tokenization import load_tokenizer, read_vocab

if TYPE_CHECKING:  # annotation only: model dirs load where ml_collections is absent (GPU image)
  import ml_collections


def checkpoint_dir(init_checkpoint: str) -> pathlib.Path:
  """The directory holding a checkpoint (a TF1 checkpoint is a file prefix)."""
  path = fs.path(init_checkpoint)
  return path if path.is_dir() else path.parent


def resolve_vocab(config: ml_collections.ConfigDict) -> str:
  """config.vocab_path, else the checkpoint's vocab.txt."""
  if config.vocab_path:
    return str(config.vocab_path)
  if not config.init_checkpoint:
    raise ValueError("config.vocab_path is required when config.init_checkpoint is empty")
  candidate = checkpoint_dir(config.init_checkpoint) / "vocab.txt"
  if not candidate.exists():
    raise FileNotFoundError(f"{candidate} not found: set config.vocab_path")
  return str(candidate)


def vocab_is_uncased(vocab_path: str) -> bool:
  """True when no piece besides the [SPECIAL] tokens has an ASCII upper-case letter.

  ASCII only: uncased BERT vocabularies still hold a few symbols that Python calls upper
  case (e.g. 'ℝ'), while a cased vocabulary has thousands of A-Z pieces.
  """
  for piece in read_vocab(vocab_path):
    if piece.startswith("[") and piece.endswith("]"):
      continue
    if any("A" <= ch <= "Z" for ch in piece):
      return False
  return True


def resolve_lowercase(config: ml_collections.ConfigDict, vocab_path: str) -> bool:
  """config.lowercase (0/1), or -1 (auto): the checkpoint's HF tokenizer_config.json
  `do_lower_case` when present, else whether the vocabulary is uncased."""
  if int(config.lowercase) >= 0:
    return bool(config.lowercase)
  if config.init_checkpoint:
    tokenizer_config = checkpoint_dir(config.init_checkpoint) / "tokenizer_config.json"
    if tokenizer_config.exists():
      with fs.open(tokenizer_config, encoding="utf-8") as f:
        value = json.load(f).get("do_lower_case")
      if isinstance(value, bool):
        return value
  return vocab_is_uncased(vocab_path)


def scalars(result: dict) -> dict[str, float]:
  """The top-level numbers of an evaluation result (for logs and history)."""
  return {k: float(v) for k, v in result.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}


def save_finetuned(model_dir: str, bert_config: BertConfig, params: Any, vocab_path: str,
                   info: dict) -> None:
  """Native checkpoint + vocab.txt + task.json: everything prediction needs.

  Written under a temporary name and renamed when complete, so a failed save never
  leaves a model/ that looks finished (and an older one stays until the new one is done).
  """
  with workdir_lib.atomic_path(str(model_dir)) as tmp:
    native.save_native(bert_config, params, tmp)
    fs.copy(vocab_path, fs.join(tmp, "vocab.txt"))
    workdir_lib.write_json(fs.join(tmp, "task.json"), info)
    integrity.record(tmp)  # every file, vocab and task.json included


@dataclasses.dataclass
class Finetuned:
  model_dir: str
  info: dict
  bert_config: BertConfig
  params: Any
  tokenizer: Any


def load_finetuned(path: str | os.PathLike) -> Finetuned:
  """Reads `<workdir>/model/` (or the model dir itself) written by `save_finetuned`, a
  transformers task directory, or a TF1 fine-tuned checkpoint with its labels.txt
  (trainers/foreign_models)."""
  from biobert_jax.trainers import foreign_models

  path = fs.path(path)
  model_dir = path / "model" if (path / "model" / "task.json").exists() else path
  info_path = model_dir / "task.json"
  if info_path.exists() and not fs.finished(model_dir):
    raise FileNotFoundError(f"{model_dir} is incomplete (a copy into place was interrupted "
                            "or is still running): re-run the job that writes it")
  # Our own model dir on a store is never a foreign one (whose readers are local-only).
  foreign = (None if fs.is_remote(model_dir) and info_path.exists()
             else foreign_models.read_foreign(model_dir))
  if foreign is not None:
    info, bert_config, params = foreign
  else:
    if not info_path.exists():
      raise FileNotFoundError(f"{info_path} not found: pass a finetune workdir or its "
                              "model/ subdirectory, a transformers task directory or a TF1 "
                              "fine-tuned checkpoint directory")
    with fs.open(info_path, encoding="utf-8") as f:
      info = json.load(f)
    bert_config, params = native.load_native(str(model_dir))
  tokenizer = load_tokenizer(model_dir / "vocab.txt", lowercase=bool(info["lowercase"]),
                             extra_tokens=info.get("extra_tokens", ()))
  if tokenizer.vocab_size != bert_config.vocab_size:
    raise ValueError(f"{model_dir}: tokenizer has {tokenizer.vocab_size} ids but the model "
                     f"{bert_config.vocab_size}")
  return Finetuned(str(model_dir), info, bert_config, params, tokenizer)
