"""Workdirs that never mix two runs and never look finished when they are not: recorded
configs (`check_or_record_config`) and atomic writes (`atomic_path`).
"""
from __future__ import annotations

import contextlib
import json
from typing import Any
from collections.abc import Iterator, Mapping, Sequence

from biobert_jax import fs, locking, tree

CONFIG_NAME = "config.json"
TMP_SUFFIX = fs.TMP_SUFFIX

# Keys that never change what a run computes, only how it is logged, checkpointed or laid
# out on devices (checkpoints restore onto any mesh), plus overwrite itself.
COMMON_IGNORED = ("overwrite", "log_every", "checkpoint_every", "keep_checkpoints",
                  "keep_every", "async_checkpoints", "tensorboard", "mesh", "compile_ahead",
                  "compile_threads")


class WorkdirConfigMismatch(ValueError):
  """A re-run's config differs from the one recorded in its workdir."""


def _dotted(config_json: Mapping[str, Any]) -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}: config keys as users type them after --config."""
  return {path.replace("/", "."): value for path, value in tree.flatten(config_json).items()}


def config_as_json(config: Any) -> dict:
  """The config as plain JSON values (tuples become lists), the form config.json holds."""
  return json.loads(config.to_json_best_effort())


def config_differences(recorded: Mapping[str, Any], current: Mapping[str, Any],
                       ignore: Sequence[str] = ()) -> list[str]:
  """`key: recorded -> current` for every dotted key that differs (ignored keys and
  their sub-keys aside), sorted."""
  old, new = _dotted(recorded), _dotted(current)

  def ignored(key: str) -> bool:
    return any(key == i or key.startswith(i + ".") for i in ignore)

  missing = object()
  return [f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}"
          for k in sorted(set(old) | set(new))
          if not ignored(k) and old.get(k, missing) != new.get(k, missing)]


def clear(workdir: str) -> None:
  """Removes everything inside `workdir` but its lock (the directory itself stays)."""
  for name in fs.listdir(workdir):
    if name != locking.LOCK_NAME:  # held by the run that clears
      fs.remove(fs.join(workdir, name))


def recorded_config(workdir: str) -> dict | None:
  """The config.json a run recorded in `workdir` (plain JSON values), or None."""
  path = fs.join(workdir, CONFIG_NAME)
  if not fs.exists(path):
    return None
  with fs.open(path, encoding="utf-8") as f:
    return json.load(f)


def check_or_record_config(workdir: str, config: Any, *, ignore: Sequence[str] = (),
                           write: bool = True) -> bool:
  """Makes sure `workdir` holds this run (or nothing yet); records config.json.

  Args:
    workdir: the run's directory (created when missing).
    config: the run's ml_collections config; `config.get("overwrite")` True clears a
      workdir that holds another run first.
    ignore: top-level or dotted keys that may differ from the recorded config.
    write: False on processes other than 0 (they only check).

  Returns:
    True when the workdir already held this run (a resume), False for a fresh start.

  Raises:
    WorkdirConfigMismatch: listing the differing keys, before anything is written.
  """
  path = fs.join(workdir, CONFIG_NAME)
  current = config_as_json(config)
  overwrite = bool(config.get("overwrite", False))
  resumed = False
  recorded = recorded_config(workdir)
  if recorded is not None:
    diffs = config_differences(recorded, current, tuple(ignore) + COMMON_IGNORED)
    if overwrite:
      if write:
        clear(workdir)
    elif diffs:
      raise WorkdirConfigMismatch(
          f"{path} records another run; this config differs in {len(diffs)} key(s):\n  "
          + "\n  ".join(diffs)
          + "\nUse another --workdir, re-run with the recorded values, or pass "
          "--config.overwrite=True to delete that run and start afresh.")
    else:
      resumed = True
  if write:
    fs.makedirs(workdir)
    write_json(path, current)
  return resumed


def write_json(path: str, obj: Any) -> None:
  """JSON (indented, keys sorted) written to a temporary name, then renamed."""
  with atomic_path(path) as tmp:
    with fs.open(tmp, "w", encoding="utf-8") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")


@contextlib.contextmanager
def atomic_path(final: str, *, primary: bool = True) -> Iterator[str]:
  """Yields `<final>.tmp` to write (a file or a directory); renames it to `final` on
  success (replacing an older `final`), removes it on failure.

  Locally a directory replaces an older one in two renames (old out of the way, new in);
  a kill between them leaves the old one at `<final>.old`, never a partial result at
  `final`. On an object store `fs.commit` copies and deletes the stage last: see
  `fs.finished`.
  With several processes writing one directory, only the `primary` one removes and
  renames (the caller synchronises the processes around the block).
  """
  tmp = final + TMP_SUFFIX
  if not primary:
    yield tmp
    return
  fs.discard_unfinished(final)
  try:
    yield tmp
  except BaseException:
    fs.remove(tmp)
    raise
  fs.commit(tmp, final)
