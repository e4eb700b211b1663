"""Pre-training checkpoints with orbax: async, atomic, keep-last-N + keep-every-K, reshardable.

Layout under `directory` (orbax's): `<step>/state/` (the train-state pytree: params,
opt_state, step, rng) and `<step>/data/` (the data iterator's JSON state). Orbax writes a
step into a temporary directory and renames it when every item (and every process) is
done, so a process killed mid-save leaves only a tmp dir that `latest_step()` ignores: the
previous complete step stays the latest (tests/test_checkpoint_manager.py checks this).

Restore takes a target with shardings (ShapeDtypeStructs), so a checkpoint written on one
mesh is read straight into another one's layout.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

STATE_ITEM = "state"
DATA_ITEM = "data"


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
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=_preservation_policy(keep, keep_every),
        enable_async_checkpointing=async_save,
        # Leftover tmp dirs of a killed save are never read; a later save of the same
        # step replaces them (tests/test_checkpoint_manager.py).
        cleanup_tmp_directories=not read_only,
        read_only=read_only,
        create=not read_only)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=(STATE_ITEM, DATA_ITEM))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict | None = None) -> bool:
    """Starts saving `state` (+ the data iterator's JSON state) as `step`.

    Returns True when a save was started. Async: call wait() before reading it back.
    """
    return self._manager.save(
        int(step),
        args=ocp.args.Composite(**{
            STATE_ITEM: ocp.args.StandardSave(state),
            DATA_ITEM: ocp.args.JsonSave(data_state or {}),
        }),
        force=True)

  def restore(self, step: int | None, target: Any) -> tuple[Any, dict]:
    """Reads `step` (default: latest) into `target`'s shapes, dtypes and shardings.

    Args:
      step: which step; None = the latest complete one.
      target: pytree of jax.ShapeDtypeStruct with `.sharding` set (see
        biobert_jax.train.state.with_shardings); may describe a different mesh.

    Raises:
      FileNotFoundError: when there is no checkpoint (naming the directory).
    """
    if step is None:
      step = self.latest_step()
    if step is None:
      raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
    restored = self._manager.restore(
        int(step),
        args=ocp.args.Composite(**{
            STATE_ITEM: ocp.args.StandardRestore(target),
            DATA_ITEM: ocp.args.JsonRestore(),
        }))
    return restored[STATE_ITEM], dict(restored[DATA_ITEM] or {})

  def restore_params(self, step: int | None = None) -> tuple[int, Any]:
    """Only the params of a step, as host numpy arrays (no optimizer state, any mesh)."""
    if step is None:
      step = self.latest_step()
    if step is None:
      raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
    path = os.path.join(self.directory, str(int(step)), STATE_ITEM)
    with ocp.PyTreeCheckpointer() as ckptr:
      params_meta = ckptr.metadata(path).item_metadata.tree["params"]
      # partial_restore: only the "params" subtree is read; the optimizer state (2x the
      # params for Adam) never leaves the disk.
      item = {"params": jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), params_meta)}
      restored = ckptr.restore(path, args=ocp.args.PyTreeRestore(
          item=item,
          restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item),
          partial_restore=True))
    return int(step), restored["params"]

  def wait(self) -> None:
    """Blocks until pending async saves are committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
