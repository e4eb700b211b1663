"""Our checkpoint format (`bert_config.json` + an orbax tree at `params/`); `load_native`
also reads a pre-training workdir's latest step.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
from absl import logging
import orbax.checkpoint as ocp

from biobert_jax import fs
from biobert_jax.checkpoints import integrity
from biobert_jax.checkpoints.manager import (CheckpointManager, CheckpointWriteError,
                                             missing_files, read_pytree, write_errno)
from biobert_jax.config import BertConfig

CONFIG_NAME = "bert_config.json"
PARAMS_DIR = "params"
CHECKPOINTS_DIR = "checkpoints"  # inside a pre-training workdir


def _unstacked(params: Any) -> Any:
  """nn.scan's stacked `encoder/encoder/layer` -> `layer_{i}` (what goes on disk)."""
  enc = params.get("encoder", {}).get("encoder", {}) if isinstance(params, dict) else {}
  if "layer" in enc:
    from biobert_jax.checkpoints.names import unstack_layers
    return unstack_layers(params)
  return params


def save_native(config: BertConfig, params: Any, out_dir: str | os.PathLike) -> pathlib.Path:
  """Writes `out_dir/bert_config.json` and `out_dir/params/` (replacing old params).

  Params may be sharded jax.Arrays (every process must call this; orbax writes each shard
  once) or host numpy arrays.
  """
  out = fs.path(fs.abspath(out_dir))
  fs.makedirs(out)
  if jax.process_index() == 0:
    config.to_json_file(out / CONFIG_NAME)
    if (out / PARAMS_DIR).exists():
      fs.remove(out / PARAMS_DIR)
  params = _unstacked(params)
  try:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(out / PARAMS_DIR, params)
      ckptr.wait_until_finished()
  except Exception as e:  # re-raised, maybe reworded
    code = write_errno(e)
    if code is None:
      raise
    raise CheckpointWriteError(f"{out / PARAMS_DIR}: could not write the params: "
                               f"{os.strerror(code)} (errno {code})") from None
  if jax.process_index() == 0:
    integrity.record(out)  # verified by load_native
  return out


def _read_params(path: pathlib.Path) -> Any:
  return read_pytree(path)


def load_native(path: str | os.PathLike) -> tuple[BertConfig, Any]:
  """(config, params as host numpy) from a native directory or a pre-training workdir.

  Raises:
    FileNotFoundError: naming what is missing under `path`.
    CheckpointError: naming the missing orbax metadata/data file of an incomplete copy.
    CheckpointIntegrityError: a file differs from the checksum recorded at save time.
  """
  p = fs.path(fs.abspath(path))
  config_path = p / CONFIG_NAME
  if not config_path.exists():
    raise FileNotFoundError(f"{p}: no {CONFIG_NAME} (not a native checkpoint or workdir)")
  if (p / PARAMS_DIR).is_dir() and not missing_files(p / PARAMS_DIR):
    # (missing files are named by read_pytree, as an incomplete copy)
    integrity.verify(p, warn=lambda line: logging.warning("%s", line))
  config = BertConfig.from_json_file(config_path)
  if (p / PARAMS_DIR).is_dir():
    return config, _read_params(p / PARAMS_DIR)
  if (p / CHECKPOINTS_DIR).is_dir():
    manager = CheckpointManager(p / CHECKPOINTS_DIR, async_save=False,
                                read_only=True)
    try:
      _, params = manager.restore_params()
    finally:
      manager.close()
    return config, _unstacked(params)
  raise FileNotFoundError(f"{p}: has {CONFIG_NAME} but neither {PARAMS_DIR}/ nor "
                          f"{CHECKPOINTS_DIR}/ with a complete step")
