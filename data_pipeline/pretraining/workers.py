"""The resumable iterator (`make_iterator`): in this process or over K worker processes, each
one virtual host; exact resume and determinism are kept (WORKSPACE_NOTES.md, "Data pipeline").
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import traceback
from typing import Any

import ml_collections
import numpy as np

from data_pipeline.corpora import ReadStats
from data_pipeline.pretraining import dataset

_QUEUE_BATCHES = 4      # read-ahead per worker
_POLL_SECONDS = 0.5     # how often a blocked side checks that the other is alive


def worker_skips(batches_consumed: int, num_workers: int) -> list[int]:
  """Batches each worker delivered among the first `batches_consumed` (round robin)."""
  return [max(0, -(-(batches_consumed - k) // num_workers)) for k in range(num_workers)]


def _serve(config_dict: dict, virtual_index: int, virtual_count: int, skip_batches: int,
           threads: int, out: Any, stop: Any, parent_pid: int) -> None:
  """A worker: puts ("batch", dict), then ("end", None) or ("error", text) on `out`."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)

  def put(item) -> bool:
    while not stop.is_set() and os.getppid() == parent_pid:
      try:
        out.put(item, timeout=_POLL_SECONDS)
        return True
      except queue.Full:
        continue
    return False

  try:
    config = ml_collections.ConfigDict(config_dict)
    config.num_workers = 1
    if not config.num_threads:
      config.num_threads = threads
    batches = dataset.make_dataset(config, virtual_index, virtual_count,
                                   skip_batches=skip_batches)
    for batch in batches.as_numpy_iterator():
      if not put(("batch", batch)):
        return
    put(("end", None))
  except BaseException as e:  # reported to the main process
    put(("error", f"{type(e).__name__}: {e}\n(pipeline worker {virtual_index} of "
                  f"{virtual_count})\n{traceback.format_exc(limit=4)}"))


class WorkerError(RuntimeError):
  """A pipeline worker failed; the message carries its error (file, line, key)."""


class ParallelPretrainingIterator:
  """`dataset.PretrainingIterator`'s interface over `num_workers` worker processes."""

  def __init__(self, config: ml_collections.ConfigDict, process_index: int = 0,
               process_count: int = 1, num_workers: int = 2):
    if num_workers < 2:
      raise ValueError(f"num_workers={num_workers}: use dataset.PretrainingIterator")
    self._config = config
    self._process = (process_index, process_count)
    self._k = num_workers
    self._consumed = 0
    self._fingerprint = dataset.config_fingerprint(config)
    self._state_version = dataset.STATE_VERSION
    self._procs: list[Any] = []
    self._queues: list[Any] = []
    self._stop = None

  # --- worker lifecycle -----------------------------------------------------------------
  def _start(self) -> None:
    ctx = multiprocessing.get_context("spawn")  # TF is not fork-safe once imported
    self._stop = ctx.Event()
    index, count = self._process
    threads = max(1, (os.cpu_count() or 1) // self._k)
    config_dict = self._config.to_dict()
    for k, skip in enumerate(worker_skips(self._consumed, self._k)):
      q = ctx.Queue(maxsize=_QUEUE_BATCHES)
      p = ctx.Process(target=_serve, name=f"pretrain-input-{k}", daemon=True,
                      args=(config_dict, index * self._k + k, count * self._k, skip,
                            threads, q, self._stop, os.getpid()))
      p.start()
      self._procs.append(p)
      self._queues.append(q)

  def close(self) -> None:
    """Stops the workers (idempotent); the next fetch starts them again."""
    if self._stop is not None:
      self._stop.set()
    for p in self._procs:
      p.join(timeout=5)
      if p.is_alive():
        p.terminate()
        p.join(timeout=5)
    for q in self._queues:
      q.cancel_join_thread()
      q.close()
    self._procs, self._queues, self._stop = [], [], None

  def __del__(self):
    try:
      self.close()
    except Exception:  # interpreter shutdown
      pass

  # --- iteration and state --------------------------------------------------------------
  def __iter__(self) -> ParallelPretrainingIterator:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if not self._procs:
      self._start()
    k = self._consumed % self._k
    while True:
      try:
        kind, value = self._queues[k].get(timeout=_POLL_SECONDS)
        break
      except queue.Empty:
        if not self._procs[k].is_alive():
          code = self._procs[k].exitcode
          self.close()
          raise WorkerError(f"pipeline worker {k} exited (code {code}) without sending "
                            "batch " + str(self._consumed + 1)) from None
    if kind == "error":
      self.close()
      raise WorkerError(value)
    if kind == "end":
      self.close()
      raise StopIteration
    self._consumed += 1
    return value

  def get_state(self) -> dict[str, Any]:
    return {"version": self._state_version, "batches_consumed": self._consumed,
            "process_index": self._process[0], "process_count": self._process[1],
            "config_fingerprint": self._fingerprint}

  def set_state(self, state: dict[str, Any]) -> None:
    """Continues after the last batch consumed when `state` was taken."""
    dataset.check_state(state, self._process, self._fingerprint)
    self.close()
    self._consumed = int(state["batches_consumed"])


def make_iterator(config, process_index: int = 0, process_count: int = 1,
                  tokenizer=None, stats: ReadStats | None = None) -> Any:
  """A resumable batch iterator: in this process, or over config.num_workers workers."""
  dataset.validate_config(config)
  workers = config.get("num_workers", 1)
  if workers == 1:
    return dataset.PretrainingIterator(config, process_index, process_count, tokenizer,
                                       stats)
  if stats is not None or tokenizer is not None:
    raise ValueError("with config.num_workers > 1 the workers load the tokenizer from "
                     "config.vocab_path and keep their read statistics: pass neither a "
                     "tokenizer object nor stats (or use num_workers=1)")
  return ParallelPretrainingIterator(config, process_index, process_count, workers)
