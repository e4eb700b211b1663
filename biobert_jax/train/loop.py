"""The training loop: steps, logging, evaluation, checkpoints, NaN guard, preemption.

Everything model-, data- and config-specific is passed in (experiments/pretrain.py wires
it), so this module stays TF-free and testable with any step function and iterator.

Host-device sync: step s's metrics are fetched after step s+1 has been dispatched (one
step of lag), so the host never idles the accelerator just to read a loss, yet no state
is ever saved before its step's loss and gradient norm were checked to be finite.
"""
from __future__ import annotations

import dataclasses
import signal
import threading
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from biobert_jax.checkpoints.manager import CheckpointManager
from biobert_jax.train.metrics_writer import MetricsWriter

LOGGED_KEYS = ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy",
               "grad_norm", "learning_rate")


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN/inf loss or gradient; no state after it was saved."""


@dataclasses.dataclass
class LoopConfig:
  total_steps: int
  log_every: int = 100
  checkpoint_every: int = 1000
  eval_every: int = 0  # 0 = only at the end (when an eval_fn is given)


@dataclasses.dataclass
class LoopResult:
  final_step: int
  preempted: bool
  last_row: dict[str, Any] | None


class PreemptionFlag:
  """Set by SIGTERM (the usual preemption notice); the loop saves and returns."""

  def __init__(self):
    self._event = threading.Event()
    self._previous = None

  def install(self) -> "PreemptionFlag":
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
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


def _any_process(flag: bool) -> bool:
  """True on every process when it is True on any (all processes must stop together)."""
  if jax.process_count() == 1:
    return flag
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def run(*, state: Any, train_step: Callable[[Any, Any], tuple[Any, Mapping[str, Any]]],
        batches: Iterator[Mapping[str, np.ndarray]],
        to_global: Callable[[Mapping[str, np.ndarray]], Any],
        data_state: Callable[[], dict], checkpoints: CheckpointManager,
        writer: MetricsWriter, config: LoopConfig,
        eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
        eval_writer: MetricsWriter | None = None,
        preemption: PreemptionFlag | None = None,
        log_fn: Callable[[str], None] = logging.info) -> LoopResult:
  """Trains from `state["step"]` to `config.total_steps`.

  Args:
    state: the (sharded) train state dict; its "step" says where training stands.
    train_step: jitted (state, global batch) -> (state, metrics); state is donated.
    batches: this process's numpy batches.
    to_global: process-local numpy batch -> global sharded arrays.
    data_state: returns the iterator's JSON state (saved with every checkpoint).
    checkpoints: where states go (a save every checkpoint_every steps and at the end).
    writer: metrics.jsonl (+ TensorBoard) writer; a row every log_every steps and at
      the last step.
    config: step counts.
    eval_fn: params -> eval metrics, run every eval_every steps and at the end.
    eval_writer: where eval rows go (eval_metrics.jsonl).
    preemption: flag checked every step; when set, the current state is saved and the
      loop returns with preempted=True.
    log_fn: where the progress line goes (process 0 only).

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
      raise NonFiniteLossError(
          f"step {s}: non-finite loss={host['loss']} / grad_norm={host['grad_norm']}; "
          f"stopped without saving it, last good checkpoint is step "
          f"{checkpoints.latest_step()} in {checkpoints.directory}")
    window.append(host)
    if s % config.log_every == 0 or s == total:
      now = time.perf_counter()
      row = {k: float(np.mean([w[k] for w in window])) for k in LOGGED_KEYS}
      row["learning_rate"] = window[-1]["learning_rate"]
      row["tokens_per_sec"] = sum(w["num_tokens"] for w in window) / max(now - window_start, 1e-9)
      rate = (s - run_start_step) / max(now - run_start, 1e-9)
      last_row = writer.write(s, row)
      if jax.process_index() == 0:
        log_fn(f"step {s}/{total} loss {row['loss']:.4f} mlm_acc {row['mlm_accuracy']:.3f} "
               f"nsp_acc {row['nsp_accuracy']:.3f} | {row['tokens_per_sec']:.0f} tokens/s "
               f"(non-pad) | lr {row['learning_rate']:.2e} | "
               f"ETA {_format_eta((total - s) / max(rate, 1e-9))}")
      window.clear()
      window_start = now

  def evaluate(s: int) -> None:
    if eval_fn is None:
      return
    result = dict(eval_fn(state["params"]))
    (eval_writer or writer).write(s, {f"eval_{k}": v for k, v in result.items()})
    if jax.process_index() == 0:
      log_fn(f"eval at step {s}: " + " ".join(f"{k} {v:.4f}" for k, v in result.items()))

  last_saved = checkpoints.latest_step()

  def save(s: int) -> None:
    nonlocal last_saved
    checkpoints.save(s, state, data_state())
    last_saved = s

  preempted = False
  start_step = step
  while step < total:
    if preemption is not None and _any_process(preemption.is_set()):
      preempted = True
      break
    batch = to_global(next(batches))
    state, metrics = train_step(state, batch)
    step += 1
    if pending is not None:
      check_and_log(pending)
    pending = (step, metrics)
    boundary = step % config.checkpoint_every == 0 or step == total
    eval_now = config.eval_every and step % config.eval_every == 0 and step != total
    if boundary or eval_now:
      check_and_log(pending)
      pending = None
    if boundary:
      save(step)
    if eval_now:
      evaluate(step)
  if pending is not None:
    check_and_log(pending)
  if last_saved != step:
    save(step)
  if not preempted and step == total and step > start_step:
    evaluate(step)
  checkpoints.wait()
  return LoopResult(final_step=step, preempted=preempted, last_row=last_row)
