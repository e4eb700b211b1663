"""Metrics to DIR/<name>.jsonl and TensorBoard (process 0 only); local directories are
written without importing TensorFlow. On gs:// the .jsonl object is rewritten per write (no
append) and events are staged locally and uploaded through `fs` (docs/storage.md).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import types
from typing import Any
from collections.abc import Mapping

import jax
import numpy as np
from absl import logging

from biobert_jax import fs


def _plain(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "dtype"):
    value = np.asarray(value).item()
  return value


_NOTF = "tensorboard.compat.notf"


@contextlib.contextmanager
def _tensorboard_files(directory: str):
  """Within: tensorboard resolves its file API to the TF-free stub, when `directory` is
  local and TensorFlow is not imported (tensorboard resolves it once per process; a
  process that already resolved it keeps its choice)."""
  if "://" in directory or "tensorflow" in sys.modules or _NOTF in sys.modules:
    yield
    return
  sys.modules[_NOTF] = types.ModuleType(_NOTF)
  try:
    yield
  finally:
    sys.modules.pop(_NOTF, None)


class MetricsWriter:
  """Appends rows to `<workdir>/<name>.jsonl`; mirrors scalars to TensorBoard.

  Args:
    workdir: output directory.
    name: file stem ("metrics" -> metrics.jsonl).
    tensorboard_dir: where events go (None = no TensorBoard).
    tag_prefix: prefix of TensorBoard tags (e.g. "eval_").
  """

  def __init__(self, workdir: str, name: str = "metrics", *,
               tensorboard_dir: str | None = None, tag_prefix: str = ""):
    self.path = fs.join(workdir, f"{name}.jsonl")
    self._active = jax.process_index() == 0
    self._prefix = tag_prefix
    self._tb = None
    self._tb_upload: tuple[str, str] | None = None  # (local staging dir, remote dir)
    if self._active:
      fs.makedirs(workdir)
      if tensorboard_dir:
        if fs.is_remote(tensorboard_dir):
          staging = tempfile.mkdtemp(prefix="tensorboard-")
          self._tb_upload = (staging, tensorboard_dir)
          tensorboard_dir = staging
        try:
          from tensorboard.summary import _writer
          with _tensorboard_files(tensorboard_dir):
            self._tb = _writer.Writer(tensorboard_dir)
        except ImportError as e:  # tensorboard is optional for the library.
          logging.warning("TensorBoard writer unavailable (%s); writing %s only", e,
                          self.path)

  def write(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Writes one row {"step": step, **metrics}; returns it (plain Python values)."""
    row = {"step": int(step)}
    row.update({k: _plain(v) for k, v in metrics.items()})
    if not self._active:
      return row
    fs.append_text(self.path, json.dumps(row) + "\n")
    if self._tb is not None:
      for k, v in row.items():
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
          self._tb.add_scalar(self._prefix + k, v, step=int(step))
      self._tb.flush()
      self._upload_events()
    return row

  def _upload_events(self) -> None:
    if self._tb_upload is None:
      return
    staging, remote = self._tb_upload
    for rel in fs.walk_files(staging):
      fs.copy(os.path.join(staging, rel), fs.join(remote, rel))

  def truncate_after(self, step: int) -> None:
    """Drops rows with step > `step` (a resumed run rewrites them), keeps the rest."""
    if not self._active or not fs.exists(self.path):
      return
    with fs.open(self.path, encoding="utf-8") as f:
      rows = [line for line in f if line.strip()]
    kept = []
    for line in rows:
      try:
        if json.loads(line)["step"] <= step:
          kept.append(line)
      except (ValueError, KeyError):  # a line cut by a kill mid-write: dropped.
        continue
    with fs.open(self.path, "w", encoding="utf-8") as f:
      f.writelines(kept)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None
      self._upload_events()


def read_jsonl(path: str | os.PathLike, *, missing_ok: bool = False) -> list[dict[str, Any]]:
  """All rows of a metrics .jsonl file. A missing file raises FileNotFoundError, or with
  `missing_ok` reads as no rows (a run that never evaluated has no eval_metrics.jsonl)."""
  if missing_ok and not fs.exists(path):
    return []
  with fs.open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
