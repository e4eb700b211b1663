"""Pre-training batch sources with exact resume: the corpus pipeline, or synthetic batches
that need no TensorFlow.
"""
from __future__ import annotations

import queue
import signal
import threading
from typing import Any
from collections.abc import Iterator

import ml_collections
import numpy as np
from absl import logging

from biobert_jax.train import loop

# Trainer config keys that the corpus pipeline reads under the same name.
_SHARED_KEYS = ("train_files", "vocab_path", "lowercase", "max_seq_length",
                "max_predictions_per_seq", "seed")


class SyntheticBatches:
  """Random BERT batches; global batch i depends only on (seed, stream, i).

  Each process yields its contiguous slice of the GLOBAL batch, so a run sees the same
  global batches whatever the number of processes (the multi-host test relies on it),
  and a resumed run continues exactly.
  """

  def __init__(self, *, batch_size: int, seq_len: int, num_predictions: int,
               vocab_size: int, seed: int, process_index: int = 0, process_count: int = 1,
               stream: int = 0):
    """batch_size is the GLOBAL batch; this process yields batch_size // process_count."""
    if batch_size % process_count:
      raise ValueError(f"batch_size={batch_size} is not divisible by {process_count} processes")
    self.batch_size, self.seq_len, self.num_predictions = batch_size, seq_len, num_predictions
    self.vocab_size, self.seed, self.stream = vocab_size, seed, stream
    self.process_index, self.process_count = process_index, process_count
    self.consumed = 0

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def batch(self, index: int) -> dict[str, np.ndarray]:
    """This process's rows of global batch `index`."""
    full = self.global_batch(index)
    rows = self.batch_size // self.process_count
    start = self.process_index * rows
    return {k: v[start:start + rows] for k, v in full.items()}

  def global_batch(self, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, self.stream, index])
    b, l, p = self.batch_size, self.seq_len, self.num_predictions
    lengths = rng.integers(l // 2, l + 1, size=b)
    input_mask = (np.arange(l)[None, :] < lengths[:, None]).astype(np.int32)
    # Ids 0..4 are [PAD]/[unused] in BERT vocabs; real pieces start above.
    input_ids = rng.integers(5, self.vocab_size, size=(b, l)).astype(np.int32) * input_mask
    segment_ids = (np.arange(l)[None, :] >= (lengths // 2)[:, None]).astype(np.int32) * input_mask
    positions = np.sort(rng.integers(1, np.maximum(lengths, 2)[:, None], size=(b, p)), axis=1)
    num_real = rng.integers(1, p + 1, size=b)
    weights = (np.arange(p)[None, :] < num_real[:, None]).astype(np.float32)
    return {
        "input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids,
        "masked_lm_positions": (positions * weights).astype(np.int32),
        "masked_lm_ids": np.take_along_axis(input_ids, positions, axis=1) * weights.astype(np.int32),  # noqa: E501
        "masked_lm_weights": weights,
        "next_sentence_labels": rng.integers(0, 2, size=b).astype(np.int32),
    }

  def __next__(self) -> dict[str, np.ndarray]:
    out = self.batch(self.consumed)
    self.consumed += 1
    return out

  def get_state(self) -> dict[str, Any]:
    return {"source": "synthetic", "batches_consumed": self.consumed,
            "process_index": self.process_index}

  def set_state(self, state: dict[str, Any]) -> None:
    if state.get("source") != "synthetic":
      raise ValueError(f"data state {state} was not written by the synthetic source")
    self.consumed = int(state["batches_consumed"])


def _preemption_requested() -> bool:
  """True when the installed SIGTERM handler is the trainer's PreemptionFlag and is set."""
  owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
  return isinstance(owner, loop.PreemptionFlag) and owner.is_set()


class InterruptibleBatches:
  """Fetches each batch on a helper thread while the main thread polls for SIGTERM.

  A tf.data `next()` blocks inside C++, where Python signal handlers never run: a
  pipeline stuck on input (a hung network file system, a FIFO nobody writes) used to make
  the trainer deaf to SIGTERM. Here the main thread waits in short slices, so the
  preemption handler runs and the wait ends with loop.InputWaitInterrupted. The source's
  state is taken before each fetch, so get_state() during an abandoned fetch (which may
  still advance the source) is the state after the last *delivered* batch: the loop saves
  it and a restart replays the batch that never arrived. The wrapper is not used after
  an interruption.
  """

  def __init__(self, source: Any, poll_seconds: float = 0.2,
               stop_requested=_preemption_requested):
    self._source = source
    self._poll = poll_seconds
    self._stop_requested = stop_requested
    self._requests: queue.Queue = queue.Queue()
    self._results: queue.Queue = queue.Queue()
    self._worker: threading.Thread | None = None
    self._requested = False  # a fetch was asked for and its result not yet taken
    self._state_before_fetch: dict[str, Any] | None = None
    self.delivered = 0

  def _serve(self) -> None:
    """The helper thread: one next() of the source per request (no read-ahead)."""
    while True:
      self._requests.get()
      try:
        self._results.put(("batch", next(self._source)))
      except BaseException as e:  # re-raised by __next__
        self._results.put(("error", e))

  def __iter__(self) -> InterruptibleBatches:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._worker is None:
      self._worker = threading.Thread(target=self._serve, name="input-fetch", daemon=True)
      self._worker.start()
    if not self._requested:
      if hasattr(self._source, "get_state"):  # a plain iterator has no state to keep
        self._state_before_fetch = self._source.get_state()
      self._requests.put(None)
      self._requested = True
    while True:
      try:
        kind, value = self._results.get(timeout=self._poll)
        break
      except queue.Empty:
        if self._stop_requested():
          raise loop.InputWaitInterrupted(
              f"SIGTERM while waiting for input batch {self.delivered + 1}") from None
    self._requested = False
    if kind == "error":
      raise value
    self.delivered += 1
    return value

  def get_state(self) -> dict[str, Any]:
    if self._requested:  # a fetch is outstanding: the source may be mid-batch
      return self._state_before_fetch
    return self._source.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._source.set_state(state)


def pipeline_config(config: ml_collections.ConfigDict,
                    process_count: int) -> ml_collections.ConfigDict:
  """data_pipeline.pretraining's config from the trainer's (per-process batch size)."""
  from data_pipeline import pretraining
  if config.batch_size % process_count:
    raise ValueError(f"config.batch_size={config.batch_size} (global) is not divisible by "
                     f"the {process_count} processes")
  pc = pretraining.default_config()
  for key in _SHARED_KEYS:
    pc[key] = config[key]
  pc.batch_size = config.batch_size // process_count
  pc.update(config.data.to_dict())
  return pc


def make_train_batches(config: ml_collections.ConfigDict, vocab_size: int,
                       process_index: int, process_count: int) -> Any:
  """Iterator with get_state/set_state over this process's training batches."""
  if config.data_source == "synthetic":
    return SyntheticBatches(batch_size=config.batch_size, seq_len=config.max_seq_length,
                            num_predictions=config.max_predictions_per_seq,
                            vocab_size=vocab_size, seed=config.seed,
                            process_index=process_index, process_count=process_count)
  if config.data_source != "corpus":
    raise ValueError(f"config.data_source={config.data_source!r}: expected 'corpus' or "
                     "'synthetic'")
  from data_pipeline import pretraining
  return InterruptibleBatches(pretraining.make_iterator(
      pipeline_config(config, process_count), process_index, process_count))


def make_eval_batches(config: ml_collections.ConfigDict, vocab_size: int,
                      process_index: int, process_count: int) -> list[dict[str, np.ndarray]]:
  """A fixed list of held-out batches (the same ones at every evaluation)."""
  n = int(config.eval_steps)
  if n <= 0:
    return []
  if config.data_source == "synthetic":
    src = SyntheticBatches(batch_size=config.batch_size, seq_len=config.max_seq_length,
                           num_predictions=config.max_predictions_per_seq,
                           vocab_size=vocab_size, seed=config.seed,
                           process_index=process_index, process_count=process_count,
                           stream=1)
    return [next(src) for _ in range(n)]
  from data_pipeline import pretraining
  ds = pretraining.make_eval_dataset(pipeline_config(config, process_count), process_index,
                                     process_count)
  batches = list(ds.take(n).as_numpy_iterator())
  if len(batches) < n:  # a small corpus or holdout_every=0: say so rather than skip quietly
    logging.warning("evaluation: %d of eval_steps=%d held-out batches of %d examples "
                    "(data.holdout_every=%s, data.eval_files=%r)%s", len(batches), n,
                    config.batch_size // process_count, config.data.get("holdout_every"),
                    config.data.get("eval_files"), "; no evaluation" if not batches else "")
  return batches
