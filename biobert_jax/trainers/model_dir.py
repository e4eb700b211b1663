"""Small I/O helpers of the fine-tuning launcher: vocab/casing resolution and metric logs."""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import ml_collections

from data_pipeline.tokenization import read_vocab


def checkpoint_dir(init_checkpoint: str) -> pathlib.Path:
  """The directory holding a checkpoint (a TF1 checkpoint is a file prefix)."""
  path = pathlib.Path(init_checkpoint)
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
      with open(tokenizer_config, encoding="utf-8") as f:
        value = json.load(f).get("do_lower_case")
      if isinstance(value, bool):
        return value
  return vocab_is_uncased(vocab_path)


def scalars(result: dict) -> dict[str, float]:
  """The top-level numbers of an evaluation result (for logs and history)."""
  return {k: float(v) for k, v in result.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}


class MetricsLogger:
  """Appends `{"step", ...}` lines to <workdir>/metrics.jsonl and TensorBoard scalars."""

  def __init__(self, workdir: str):
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
    from data_pipeline._tf import tf  # pylint: disable=import-outside-toplevel

    self._tf = tf
    self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, values: dict[str, Any]) -> None:
    self._jsonl.write(json.dumps({"step": int(step), **values}) + "\n")
    self._jsonl.flush()
    with self._writer.as_default(step=int(step)):
      for name, value in values.items():
        self._tf.summary.scalar(name, float(value))
    self._writer.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._writer.close()
