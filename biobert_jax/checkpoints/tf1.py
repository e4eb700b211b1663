"""Google's TF1 BERT checkpoints (bert_config.json + model.ckpt-N); the only place the core
imports TensorFlow (lazily). Optimizer slots and bookkeeping variables are never read.
"""
from __future__ import annotations

import os
import pathlib
import re
from typing import Any
from collections.abc import Mapping

import jax
import numpy as np

from biobert_jax import fs
from biobert_jax.checkpoints import names
from biobert_jax.checkpoints.convert import CheckpointError, LoadReport, assemble, disassemble
from biobert_jax.config import BertConfig

CONFIG = "bert_config.json"
_STEP = re.compile(r"-(\d+)$")


def _tf():
  import tensorflow as tf

  try:
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError):  # already initialised: nothing to do
    pass
  return tf


def find_checkpoint(path: str | os.PathLike) -> pathlib.Path | None:
  """The checkpoint prefix for `path` (a prefix, or a directory: its latest model.ckpt-N)."""
  p = fs.path(path)  # local: pathlib.Path; gs://: detection only (loads read a copy)
  if p.with_name(p.name + ".index").exists():
    return p
  if not p.is_dir():
    return None
  prefixes = [f.with_suffix("") for f in p.glob("*.index")]
  if not prefixes:
    return None

  def step(prefix: pathlib.Path) -> int:
    m = _STEP.search(prefix.name)
    return int(m.group(1)) if m else -1

  return max(prefixes, key=lambda q: (step(q), q.name))


def _config_path(prefix: pathlib.Path) -> pathlib.Path:
  for candidate in (prefix.parent / CONFIG, prefix.parent / "config.json"):
    if candidate.exists():
      return candidate
  raise CheckpointError(f"{prefix}: no {CONFIG} next to the TF1 checkpoint")


def load(path: str | os.PathLike, *, strict: bool = True, rng: jax.Array | None = None,
         ) -> tuple[BertConfig, dict[str, Any], LoadReport]:
  """Reads a TF1 BERT checkpoint -> (config, {"encoder": ..., ["cls": ...]}, report).

  Fine-tuned checkpoints also give their task heads (`qa_outputs` from run_squad's
  cls/squad/*, `classifier` from run_classifier / BioBERT run_re / run_ner `output_*`); see
  `names.TASK_HEADS`.
  """
  prefix = find_checkpoint(path)
  if prefix is None:
    raise CheckpointError(f"{path}: no TF1 checkpoint (*.index) found")
  config = BertConfig.from_json_file(_config_path(prefix))
  report = LoadReport(path=str(prefix), format="tf1")
  tf = _tf()
  try:
    reader = tf.train.load_checkpoint(str(prefix))
    shapes = reader.get_variable_to_shape_map()
  except Exception as e:  # tf.errors.* (DataLossError, NotFoundError, ...)
    raise CheckpointError(f"{prefix}: cannot read TF1 checkpoint: {e}") from e
  tensors = {}
  for name in sorted(shapes):
    if names.TF_IGNORED.search(name):
      report.ignored.append(name)
      continue
    try:
      tensors[name] = np.asarray(reader.get_tensor(name))
    except Exception as e:
      raise CheckpointError(f"{prefix}: cannot read variable {name}: {e}") from e
  # Only cls/predictions and cls/seq_relationship are pre-training heads; cls/squad/* is
  # run_squad's QA head, taken by assemble's task-head table like run_classifier's.
  heads = any(n.startswith(("cls/predictions/", "cls/seq_relationship/")) for n in tensors)
  params = assemble(config, tensors, fmt="tf", heads=heads, report=report, strict=strict, rng=rng)
  return config, params, report


def export(config: BertConfig, params: Mapping[str, Any], out_prefix: str | os.PathLike, *,
           drop_unknown: bool = False) -> pathlib.Path:
  """Writes `out_prefix`.{index,data-00000-of-00001} with Google's names + bert_config.json.

  Written with tf.raw_ops.SaveV2 (the op behind tf.compat.v1.train.Saver), so Google's
  run_pretraining.py / run_classifier.py `--init_checkpoint` and tf.train.load_checkpoint read it.
  """
  tensors, _ = disassemble(config, params, fmt="tf", drop_unknown=drop_unknown)
  prefix = pathlib.Path(out_prefix)
  prefix.parent.mkdir(parents=True, exist_ok=True)
  tf = _tf()
  keys = sorted(tensors)
  tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=keys, shape_and_slices=[""] * len(keys),
                    tensors=[tf.constant(tensors[k]) for k in keys])
  config.to_json_file(prefix.parent / CONFIG)
  # The state file tf.train.latest_checkpoint(dir) reads.
  (prefix.parent / "checkpoint").write_text(
      f'model_checkpoint_path: "{prefix.name}"\nall_model_checkpoint_paths: "{prefix.name}"\n')
  return prefix
