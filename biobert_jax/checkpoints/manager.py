"""Pre-training checkpoints with orbax: async, atomic, keep-last-N + keep-every-K, restored
onto any mesh. A killed save leaves only a tmp dir that `latest_step()` ignores.

Every committed step gets `<step>/checksums.json` (SHA-256 per file, checkpoints/integrity),
verified on restore; `restore(None, ...)` falls back to the newest whole step, saying so.
"""
from __future__ import annotations

import errno as errno_lib
import logging
import os
import re
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from biobert_jax import fs
from biobert_jax.checkpoints import integrity
from biobert_jax.checkpoints.convert import CheckpointError

STATE_ITEM = "state"
DATA_ITEM = "data"

# tensorstore reports a failed write as ValueError("RESOURCE_EXHAUSTED: ... [os_error_code=
# '28']"), not as OSError; these mark an exception as a write failure of the file system.
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")
_WRITE_FAILURE_MARKS = ("RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "No space left",
                        "Permission denied", "Read-only file system", "Disk quota")


class CheckpointMismatchError(ValueError):
  """A whole checkpoint whose tree or shapes differ from what the run restores into."""


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (full disk, permissions); the previous one stays."""


def write_errno(error: BaseException) -> int | None:
  """The errno of a file-system write failure anywhere in `error`'s chain, else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno:
      return error.errno
    text = str(error)
    match = _OS_ERROR_CODE.search(text)
    if match:
      return int(match.group(1))
    if any(mark in text for mark in _WRITE_FAILURE_MARKS):
      return errno_lib.ENOSPC if "RESOURCE_EXHAUSTED" in text else errno_lib.EACCES
    error = error.__cause__ or error.__context__
  return None


def missing_files(path: str | os.PathLike) -> list[str]:
  """The files of an orbax (OCDBT) pytree directory that are not there, by name."""
  path = os.fspath(path)
  if not fs.isdir(path):
    return [path]
  names = fs.listdir(path)
  process_dirs = [fs.join(path, d) for d in sorted(names)
                  if d.startswith("ocdbt.process_")]
  wanted = [fs.join(path, "_METADATA")]
  if process_dirs or "manifest.ocdbt" in names or "d" in names:  # the OCDBT layout
    wanted += [fs.join(path, "manifest.ocdbt"), fs.join(path, "d")]
    if not process_dirs:
      wanted.append(fs.join(path, "ocdbt.process_0"))
  for process_dir in process_dirs:
    wanted += [fs.join(process_dir, "manifest.ocdbt"), fs.join(process_dir, "d")]
  return [w for w in wanted if not fs.exists(w)]


def read_pytree(path: str | os.PathLike, subtree: str | None = None) -> Any:
  """A saved pytree (or its `subtree`) as host numpy arrays, on any mesh.

  Raises:
    CheckpointError: naming the missing metadata/data files, or what orbax could not read.
  """
  path = os.fspath(path)
  missing = missing_files(path)
  if missing:
    raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)} "
                          "(a save that did not finish, or a partial copy)")
  try:
    with ocp.PyTreeCheckpointer() as ckptr:
      item_metadata = getattr(ckptr.metadata(path), "item_metadata", None)
      tree = getattr(item_metadata, "tree", None)
      if tree is None:
        raise CheckpointError(f"{path}: the orbax metadata (_METADATA) has no tree; "
                              "the checkpoint is incomplete or from another writer")
      if subtree is not None:
        if subtree not in tree:
          raise CheckpointError(f"{path}: no {subtree!r} in the saved tree "
                                f"(found {sorted(tree)})")
        tree = {subtree: tree[subtree]}
      item = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
      restored = ckptr.restore(path, args=ocp.args.PyTreeRestore(
          item=item,
          restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item),
          # Only the wanted subtree is read: e.g. the optimizer state (2x the params for
          # Adam) never leaves the disk.
          partial_restore=subtree is not None))
  except CheckpointError:
    raise
  except Exception as e:  # orbax/tensorstore: many types
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise CheckpointError(f"{path}: cannot read the checkpoint ({type(e).__name__}: "
                          f"{first[:300]})") from None
  return restored[subtree] if subtree is not None else restored


class _NoTracebacks(logging.Filter):
  """Keeps orbax's error log lines but drops their tracebacks (~300 lines per failed
  async save, from each of its threads); the CheckpointWriteError says what happened."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.exc_info and f"{os.sep}orbax{os.sep}" in (record.pathname or ""):
      record.exc_info, record.exc_text = None, None
    return True


_NO_TRACEBACKS = _NoTracebacks()
logging.getLogger("absl").addFilter(_NO_TRACEBACKS)


def _preservation_policy(keep: int, keep_every: int) -> Any:
  chosen = [policies.LatestN(max(int(keep), 1))]
  if keep_every and keep_every > 0:
    chosen.append(policies.EveryNSteps(int(keep_every)))
  return policies.AnyPreservationPolicy(chosen)


class CheckpointManager:
  """Thin wrapper around orbax's CheckpointManager for {state, data} steps.

  Args:
    directory: where the steps live (created if missing).
    keep: the newest `keep` steps are always kept.
    keep_every: additionally keep every step divisible by this (0 = none), e.g. for
      later evaluation of intermediate checkpoints.
    async_save: write in a background thread while training continues.
    read_only: only read (e.g. load_native on a workdir a run may still be writing to):
      nothing is created, deleted or cleaned up.
  """

  def __init__(self, directory: str | os.PathLike, *, keep: int = 3, keep_every: int = 0,
               async_save: bool = True, read_only: bool = False):
    self.directory = fs.abspath(directory)  # gs:// goes to orbax untouched
    options = ocp.CheckpointManagerOptions(
        preservation_policy=_preservation_policy(keep, keep_every),
        enable_async_checkpointing=async_save,
        # Leftover tmp dirs of a killed save are never read; a later save of the same
        # step replaces them (tests/test_checkpoint_manager.py).
        cleanup_tmp_directories=not read_only,
        read_only=read_only,
        create=not read_only)
    self._pending_step: int | None = None  # the async save wait() has not confirmed
    self._unrecorded: list[int] = []  # committed or in flight, checksums not yet written
    self._read_only = read_only
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=(STATE_ITEM, DATA_ITEM))

  def _write_failure(self, error: BaseException, step: int | None) -> BaseException:
    """CheckpointWriteError for a file-system write failure, else `error` itself."""
    code = write_errno(error)
    if code is None:
      return error
    try:
      previous = self._manager.latest_step()
    except Exception:  # only for the message
      previous = None
    kept = (f"step {previous} is still the latest complete checkpoint" if previous is not None
            else "there is no earlier complete checkpoint")
    what = f"step {step}" if step is not None else "a checkpoint"
    failure = CheckpointWriteError(
        f"{self.directory}: could not write {what}: {os.strerror(code)} "
        f"(errno {code} {errno_lib.errorcode.get(code, '')}); {kept}. Free space or fix "
        f"the permissions, then restart to resume")
    failure.errno = code
    return failure

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict | None = None) -> bool:
    """Starts saving `state` (+ the data iterator's JSON state) as `step`.

    Returns True when a save was started. Async: call wait() before reading it back.

    Raises:
      CheckpointWriteError: the disk is full or not writable (this save, or the previous
        async one, failed); the last complete step stays readable.
    """
    try:
      self._manager.wait_until_finished()  # orbax waits here anyway; then record checksums
      self._record_checksums()
      started = self._manager.save(
          int(step),
          args=ocp.args.Composite(**{
              STATE_ITEM: ocp.args.StandardSave(state),
              DATA_ITEM: ocp.args.JsonSave(data_state or {}),
          }),
          force=True)
    except Exception as e:  # re-raised, maybe reworded
      failed = self._pending_step if self._pending_step is not None else step
      self._pending_step = None
      self._unrecorded = []
      raise self._write_failure(e, failed) from None
    self._pending_step = int(step)
    if started:
      self._unrecorded.append(int(step))
    return started

  def step_dir(self, step: int) -> str:
    return fs.join(self.directory, str(int(step)))

  def _record_checksums(self) -> None:
    """checksums.json for every finished step (primary process; others skip)."""
    steps, self._unrecorded = self._unrecorded, []
    if jax.process_index() != 0:
      return
    for step in steps:
      if fs.isdir(self.step_dir(step)):  # a preservation policy may have removed it
        integrity.record(self.step_dir(step))

  def verify(self, step: int) -> bool:
    """Checks `step`'s files against its checksums (False: none were recorded).

    Raises:
      CheckpointIntegrityError: one line naming the file and the step.
    """
    return integrity.verify(self.step_dir(step), f"step {int(step)}",
                            warn=lambda line: logging.warning("%s", line))

  def _set_aside(self, step: int) -> None:
    """Moves a damaged step out of orbax's sight (kept for inspection)."""
    if self._read_only or jax.process_index() != 0:
      return
    target = fs.join(self.directory, f"damaged-{int(step)}")
    fs.remove(target)
    fs.commit(self.step_dir(step), target)  # a rename locally, copy + delete on a store
    self._manager.reload()

  def _newest_whole(self, check: Any) -> tuple[int, Any]:
    """(step, check(step)) for the newest step that verifies and reads; older steps are
    tried in turn after a damaged one, each fallback said in one line."""
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
    last_error = None
    for i, step in enumerate(steps):
      try:
        return step, check(step)
      except CheckpointError as e:
        last_error = e
        after = (f"falling back to step {steps[i + 1]}" if i + 1 < len(steps)
                 else "no earlier checkpoint left")
        print(f"checkpoint: {e}; {after}", flush=True)
        self._set_aside(step)
    raise last_error

  def restore(self, step: int | None, target: Any) -> tuple[Any, dict]:
    """Reads `step` (default: latest) into `target`'s shapes, dtypes and shardings.

    Args:
      step: which step; None = the newest one that is complete and matches its
        checksums (a damaged newer step is said in one line and set aside as
        `damaged-<step>`).
      target: pytree of jax.ShapeDtypeStruct with `.sharding` set (see
        biobert_jax.train.state.with_shardings); may describe a different mesh.

    Raises:
      FileNotFoundError: when there is no checkpoint (naming the directory).
      CheckpointIntegrityError: `step` (or every step) is damaged: one line naming the
        file and the step.
    """
    if step is None:
      return self._newest_whole(lambda s: self._restore_step(s, target))[1]
    return self._restore_step(step, target)

  def _restore_step(self, step: int, target: Any) -> tuple[Any, dict]:
    missing = missing_files(fs.join(self.directory, str(int(step)), STATE_ITEM))
    if missing:
      raise CheckpointError(f"{self.directory}: step {step} is incomplete, missing "
                            f"{', '.join(missing)}; remove that step directory to resume "
                            "from the one before")
    self.verify(step)
    try:
      restored = self._manager.restore(
          int(step),
          args=ocp.args.Composite(**{
              STATE_ITEM: ocp.args.StandardRestore(target),
              DATA_ITEM: ocp.args.JsonRestore(),
          }))
    except (ValueError, TypeError, KeyError) as e:  # the saved tree is not this model's
      first = (str(e).strip().splitlines() or [""])[0][:300]
      raise CheckpointMismatchError(
          f"{self.directory}: step {step} holds another model's state than this run "
          f"builds (was the init checkpoint or the model size changed under a resumable "
          f"workdir?): {type(e).__name__}: {first}") from None
    return restored[STATE_ITEM], dict(restored[DATA_ITEM] or {})

  def restore_params(self, step: int | None = None) -> tuple[int, Any]:
    """Only the params of a step, as host numpy arrays (no optimizer state, any mesh);
    step None = the newest whole step (as in `restore`)."""
    def read(s: int) -> Any:
      path = fs.join(self.step_dir(s), STATE_ITEM)
      if not missing_files(path):  # else read_pytree names the missing files
        self.verify(s)
      return read_pytree(path, subtree="params")

    if step is None:
      return self._newest_whole(read)
    return int(step), read(int(step))

  def delete(self, step: int) -> None:
    """Removes a saved step (e.g. one a resumed run is about to redo)."""
    self._manager.wait_until_finished()
    self._manager.delete(int(step))

  def wait(self) -> None:
    """Blocks until pending async saves are committed (CheckpointWriteError if one failed)."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # re-raised, maybe reworded
      self._unrecorded = []
      raise self._write_failure(e, self._pending_step) from None
    finally:
      self._pending_step = None
    self._record_checksums()

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self._manager.close()
