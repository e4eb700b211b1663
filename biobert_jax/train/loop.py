"""The training loop of both trainers: steps, logging, evaluation, checkpoints, NaN guard,
preemption. Metrics are read one step late; nothing unchecked is ever saved.
"""
from __future__ import annotations

import dataclasses
import signal
import threading
import time
from typing import Any
from collections.abc import Callable, Iterator, Mapping

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from biobert_jax.checkpoints.manager import CheckpointManager
from biobert_jax.train.metrics_writer import MetricsWriter

# Step metrics that are bookkeeping, not logged as a mean: the token count becomes
# tokens_per_sec, is_finite is the NaN guard's input.
_NOT_LOGGED = ("num_tokens", "is_finite")


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN/inf loss or gradient; no state after it was saved."""


class InputWaitInterrupted(RuntimeError):
  """SIGTERM arrived while the trainer waited for an input batch.

  Raised by a batch iterator (trainers/pretrain_data.InterruptibleBatches), whose
  get_state() then still describes the batches delivered so far, so the loop can save.
  """


@dataclasses.dataclass
class LoopConfig:
  total_steps: int
  log_every: int = 100
  checkpoint_every: int = 1000
  eval_every: int = 0  # 0 = only at the end (when an eval_fn is given)
  # Extra steps that get a checkpoint and an evaluation (fine-tuning: every epoch end).
  boundaries: frozenset[int] = frozenset()
  eval_prefix: str = "eval_"  # eval rows are {eval_prefix + key: value}


@dataclasses.dataclass
class LoopResult:
  final_step: int
  preempted: bool
  last_row: dict[str, Any] | None
  state: Any = None  # the final (sharded) train state


def _preemption_service_running() -> bool:
  """Whether jax.distributed started JAX's preemption sync manager (it owns SIGTERM)."""
  try:
    from jax._src import distributed as jax_distributed
  except ImportError:
    return False
  return getattr(jax_distributed.global_state, "preemption_sync_manager", None) is not None


class PreemptionFlag:
  """Set by SIGTERM (the usual preemption notice); the loop saves and returns.

  With several processes (jax.distributed), SIGTERM goes to JAX's preemption service
  instead: a notice on any process makes every process's
  `multihost_utils.reached_preemption_sync_point(step)` return True at the same step
  (the fastest process's step + 1), so all save that step together and exit 0. A Python
  handler would replace the service's, so none is installed then (`synced`).
  """

  def __init__(self):
    self._event = threading.Event()
    self._previous = None
    self.synced = False

  def install(self) -> PreemptionFlag:
    if jax.process_count() > 1 and _preemption_service_running():
      self.synced = True
      return self
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    logging.warning("SIGTERM received: saving a checkpoint and exiting")
    self._event.set()

  def set(self) -> None:
    self._event.set()

  def is_set(self) -> bool:
    return self._event.is_set()

  def uninstall(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None


def _stop_here(preemption: PreemptionFlag | None, step: int) -> bool:
  """Whether every process stops before step `step + 1` (preemption)."""
  if preemption is None:
    return False
  if preemption.synced:  # JAX's sync point: the same step on every process, no collective
    return bool(multihost_utils.reached_preemption_sync_point(step))
  return _any_process(preemption.is_set())


def _any_process(flag: bool) -> bool:
  """True on every process when it is True on any (all processes must stop together)."""
  if jax.process_count() == 1:
    return flag
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def default_log_line(step: int, total: int, row: Mapping[str, float], eta: str) -> str:
  """`step s/total loss x <other means> | tokens/s | lr | ETA` (the progress line)."""
  others = " ".join(f"{k} {v:.4g}" for k, v in row.items()
                    if k not in ("loss", "learning_rate", "tokens_per_sec", "grad_norm"))
  return (f"step {step}/{total} loss {row['loss']:.4f} {others} | "
          f"{row['tokens_per_sec']:.0f} tokens/s (non-pad) | lr {row['learning_rate']:.2e} | "
          f"ETA {eta}")


def run(*, state: Any, train_step: Callable[[Any, Any], tuple[Any, Mapping[str, Any]]],
        batches: Iterator[Mapping[str, np.ndarray]],
        to_global: Callable[[Mapping[str, np.ndarray]], Any],
        data_state: Callable[[], dict], checkpoints: CheckpointManager,
        writer: MetricsWriter, config: LoopConfig,
        eval_fn: Callable[[Any, int], Mapping[str, float]] | None = None,
        eval_writer: MetricsWriter | None = None,
        preemption: PreemptionFlag | None = None,
        log_fn: Callable[[str], None] = logging.info,
        log_line: Callable[[int, int, Mapping[str, float], str], str] = default_log_line,
        observe: Callable[[int, Mapping[str, float]], None] | None = None) -> LoopResult:
  """Trains from `state["step"]` to `config.total_steps`.

  Args:
    state: the (sharded) train state dict; its "step" says where training stands.
    train_step: jitted (state, global batch) -> (state, metrics); state is donated.
    batches: this process's numpy batches.
    to_global: process-local numpy batch -> global sharded arrays.
    data_state: returns the JSON state saved with every checkpoint (the iterator's
      position, and whatever else the trainer needs to resume, e.g. best-so-far).
    checkpoints: where states go (a save every checkpoint_every steps, at every boundary
      and at the end).
    writer: metrics.jsonl (+ TensorBoard) writer; a row every log_every steps and at
      the last step.
    config: step counts.
    eval_fn: (params, step) -> eval metrics, run every eval_every steps, at every
      boundary and at the end, after that step was checked and before it is saved (so a
      saved data_state already includes that evaluation). An empty result writes no row.
    eval_writer: where eval rows go (eval_metrics.jsonl).
    preemption: flag checked every step; when set, the current state is saved and the
      loop returns with preempted=True.
    log_fn: where the progress line goes (process 0 only).
    log_line: (step, total, logged row, ETA) -> the progress line.
    observe: called with (step, host metrics) for every step once it was checked finite,
      in step order (e.g. a trainer's per-epoch loss sums, saved in data_state).

  Raises:
    NonFiniteLossError: naming the first step whose loss or gradient norm is NaN/inf.
  """
  step = int(jax.device_get(state["step"]))
  total = int(config.total_steps)
  window: list[dict[str, float]] = []
  window_start = time.perf_counter()
  run_start, run_start_step = window_start, step
  last_row = None
  pending: tuple[int, Any] | None = None  # (step, device metrics) not yet checked.

  def check_and_log(item: tuple[int, Any]) -> None:
    nonlocal window_start, last_row
    s, metrics = item
    host = {k: float(v) for k, v in jax.device_get(dict(metrics)).items()}
    if not host.pop("is_finite", 1.0):
      checkpoints.wait()
      good = checkpoints.latest_step()
      where = (f"the last good checkpoint is step {good} in {checkpoints.directory}"
               if good is not None else
               f"no checkpoint was saved yet (in {checkpoints.directory})")
      raise NonFiniteLossError(
          f"step {s}: non-finite loss={host['loss']} / grad_norm={host['grad_norm']}; "
          f"stopped without saving it; {where}. Lower the learning rate or check the "
          f"input data before resuming.")
    if observe is not None:
      observe(s, host)
    window.append(host)
    if s % config.log_every == 0 or s == total:
      now = time.perf_counter()
      row = {k: float(np.mean([w[k] for w in window])) for k in host
             if k not in _NOT_LOGGED}
      row["learning_rate"] = window[-1]["learning_rate"]
      row["tokens_per_sec"] = sum(w["num_tokens"] for w in window) / max(now - window_start, 1e-9)
      rate = (s - run_start_step) / max(now - run_start, 1e-9)
      last_row = writer.write(s, row)
      if jax.process_index() == 0:
        log_fn(log_line(s, total, row, _format_eta((total - s) / max(rate, 1e-9))))
      window.clear()
      window_start = now

  def evaluate(s: int) -> None:
    if eval_fn is None:
      return
    result = dict(eval_fn(state["params"], s))
    if not result:
      return
    (eval_writer or writer).write(s, {f"{config.eval_prefix}{k}": v for k, v in result.items()})
    if jax.process_index() == 0:
      log_fn(f"eval at step {s}: " + " ".join(f"{k} {v:.4f}" for k, v in result.items()))

  last_saved = checkpoints.latest_step()

  def save(s: int) -> None:
    nonlocal last_saved
    checkpoints.save(s, state, data_state())
    last_saved = s

  preempted = False
  while step < total:
    if _stop_here(preemption, step):
      preempted = True
      if preemption.synced and jax.process_index() == 0:
        logging.warning("preemption notice on some process: every process saves step %d "
                        "and exits", step)
      break
    try:
      local_batch = next(batches)
    except InputWaitInterrupted:
      # One process: nothing else waits on this step, so save like any preemption. Several
      # processes: the others may already be inside this step's collectives, and a save
      # (a collective too) would hang them; the last periodic checkpoint is the resume point.
      if jax.process_count() > 1:
        raise
      logging.warning("SIGTERM while waiting for input: saving step %d and exiting", step)
      preempted = True
      break
    state, metrics = train_step(state, to_global(local_batch))
    step += 1
    if pending is not None:
      check_and_log(pending)
    pending = (step, metrics)
    boundary = (step % config.checkpoint_every == 0 or step == total
                or step in config.boundaries)
    eval_now = ((config.eval_every and step % config.eval_every == 0)
                or step == total or step in config.boundaries)
    if boundary or eval_now:
      check_and_log(pending)
      pending = None
    if eval_now:
      evaluate(step)
    if boundary:
      save(step)
  if pending is not None:
    check_and_log(pending)
  if last_saved != step:
    save(step)
  checkpoints.wait()
  return LoopResult(final_step=step, preempted=preempted, last_row=last_row, state=state)
