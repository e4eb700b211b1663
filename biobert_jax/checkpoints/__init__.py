"""Checkpoint import/export (HF, Google TF1, native): `load(path)` detects the format.

Returns `(config, params)` with `{"encoder": ...}` plus `"cls"` when the checkpoint has
pre-training heads; layers always unstacked (`layer_{i}`).
"""
from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Any
from collections.abc import Mapping

import jax
from absl import logging

from biobert_jax import fs
from biobert_jax.checkpoints import hf, tf1
from biobert_jax.checkpoints.convert import CheckpointError, LoadReport
from biobert_jax.checkpoints.names import flatten, stack_layers, unflatten, unstack_layers
from biobert_jax.config import BertConfig

__all__ = ["CheckpointError", "LoadReport", "detect_format", "load", "load_with_report",
           "export_hf", "export_tf1", "stack_layers", "unstack_layers", "flatten", "unflatten"]


def detect_format(path: str | os.PathLike) -> str:
  """"hf", "tf1" or "native" for `path` (a directory, or a TF1 checkpoint prefix)."""
  p = fs.path(path)
  if hf.is_hf_dir(p):
    return "hf"
  if tf1.find_checkpoint(p) is not None:
    return "tf1"
  orphan = _tf1_data_without_index(p)
  if orphan is not None:
    prefix = orphan.name.split(".data-")[0]
    raise CheckpointError(
        f"{p}: TF1 checkpoint {orphan.parent / prefix} has its data file ({orphan.name}) "
        f"but no {prefix}.index: TF1 checkpoints need the .index next to the .data-* "
        f"files (copy {prefix}.index too)")
  if p.is_dir() and ((p / "bert_config.json").exists() or (p / "params").exists()):
    return "native"
  raise CheckpointError(
      f"{p}: not a recognised checkpoint: expected a HF directory (config.json + "
      "model.safetensors or pytorch_model.bin), a TF1 checkpoint (bert_config.json + "
      "model.ckpt-N.index/.data-*), or a native directory (bert_config.json + params/)")


def _tf1_data_without_index(p: pathlib.Path) -> pathlib.Path | None:
  """A TF1 `.data-*` shard under `p` (a directory or a prefix) whose `.index` is missing."""
  if p.is_dir():
    shards = sorted(p.glob("*.data-*-of-*"))
  else:
    shards = sorted(p.parent.glob(p.name + ".data-*-of-*")) if p.parent.is_dir() else []
  for shard in shards:
    if not shard.with_name(shard.name.split(".data-")[0] + ".index").exists():
      return shard
  return None


def _load_native(path: pathlib.Path) -> tuple[BertConfig, dict[str, Any]]:
  try:
    from biobert_jax.checkpoints import native
  except ImportError as e:
    raise CheckpointError(f"{path}: looks like a native checkpoint, but "
                          f"biobert_jax.checkpoints.native is not available ({e})") from e
  return native.load_native(path)


def load_with_report(path: str | os.PathLike, *, strict: bool = True,
                     rng: jax.Array | None = None,
                     ) -> tuple[BertConfig, dict[str, Any], LoadReport]:
  """Like `load`, also returning what was loaded / new / unused / ignored.

  strict=False: params missing from the checkpoint are freshly initialised (with `rng`) and
  unexpected tensors skipped, both listed in the report; shape mismatches still fail.
  """
  p = fs.path(path)
  fmt = detect_format(p)
  if fmt in ("hf", "tf1") and fs.is_remote(p):
    # safetensors/torch and TF's checkpoint reader need local files: read a local copy.
    directory = p if p.is_dir() else p.parent
    with fs.local_copy(directory) as local:
      local_path = pathlib.Path(local) if p.is_dir() else pathlib.Path(local) / p.name
      config, params, report = load_with_report(local_path, strict=strict, rng=rng)
    report.path = str(p)
    return config, params, report
  if fmt == "hf":
    config, params, report = hf.load(p, strict=strict, rng=rng)
  elif fmt == "tf1":
    config, params, report = tf1.load(p, strict=strict, rng=rng)
  else:
    config, params = _load_native(p)
    report = LoadReport(path=str(p), format="native",
                        loaded=sorted(flatten(params)) if isinstance(params, Mapping) else [])
  logging.info("%s", report.summary())
  return config, params, report


def load(path: str | os.PathLike, *, strict: bool = True,
         rng: jax.Array | None = None) -> tuple[BertConfig, dict[str, Any]]:
  """Loads any supported checkpoint -> (config, params); see `load_with_report`."""
  config, params, _ = load_with_report(path, strict=strict, rng=rng)
  return config, params


def export_hf(config: BertConfig, params: Mapping[str, Any], out_dir: str | os.PathLike, *,
              drop_unknown: bool = False) -> pathlib.Path:
  """Writes a transformers-loadable directory (config.json + model.safetensors)."""
  if fs.is_remote(out_dir):
    with tempfile.TemporaryDirectory() as local:
      hf.export(config, params, local, drop_unknown=drop_unknown)
      _upload(local, out_dir)
    return fs.path(out_dir)
  return hf.export(config, params, out_dir, drop_unknown=drop_unknown)


def export_tf1(config: BertConfig, params: Mapping[str, Any], out_prefix: str | os.PathLike, *,
               drop_unknown: bool = False) -> pathlib.Path:
  """Writes a TF1 checkpoint with Google's variable names + bert_config.json beside it."""
  if fs.is_remote(out_prefix):
    with tempfile.TemporaryDirectory() as local:
      tf1.export(config, params, pathlib.Path(local) / fs.basename(out_prefix),
                 drop_unknown=drop_unknown)
      _upload(local, fs.dirname(out_prefix))
    return fs.path(out_prefix)
  return tf1.export(config, params, out_prefix, drop_unknown=drop_unknown)


def _upload(local: str, out_dir: str | os.PathLike) -> None:
  """A finished local export into place on a store: staged, then committed whole."""
  out_dir = os.fspath(out_dir)
  stage = out_dir.rstrip("/") + fs.TMP_SUFFIX
  fs.discard_unfinished(out_dir)
  fs.copytree(local, stage)
  fs.commit(stage, out_dir)


def convert_checkpoint(src: str | os.PathLike, out: str | os.PathLike, fmt: str,
                       strict: bool = True) -> pathlib.Path:
  """Reads any supported checkpoint and writes it as `fmt` ("hf", "tf1" or "native").

  Task heads other than the pre-training heads ("cls") are dropped for hf/tf1 (they have
  no standard name there) and kept for native.
  """
  config, params = load(src, strict=strict)  # logs loaded / new / unused / ignored
  if fmt == "hf":
    return export_hf(config, params, out, drop_unknown=True)
  if fmt == "tf1":
    return export_tf1(config, params, fs.join(out, "model.ckpt"), drop_unknown=True)
  if fmt == "native":
    from biobert_jax.checkpoints import native
    return native.save_native(config, params, out)
  raise ValueError(f"unknown checkpoint format {fmt!r}; valid: hf, tf1, native")

