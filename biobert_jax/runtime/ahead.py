"""A jitted step compiled ahead of time, one executable per batch shape, in worker threads;
results are bit-identical to calling the jitted function (docs/cpu.md).
"""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Any
from collections.abc import Callable, Iterable

import jax
import numpy as np

from biobert_jax.runtime import host_memory


def batch_key(batch: dict[str, Any]) -> tuple:
  """What selects an executable: each array's name, shape and dtype."""
  return tuple((k, tuple(v.shape), np.dtype(v.dtype).str) for k, v in sorted(batch.items()))


class CompiledByShape:
  """`jitted(*leading, batch)`, with executables compiled ahead per batch shape.

  `leading` (e.g. the train state, or the params) has the same shapes and shardings at
  every call: only the last argument, a dict batch, varies. Executables are kept across
  calls of `compile_ahead`, so a trainer that reuses this object (another seed, same
  program) compiles nothing again.
  """

  def __init__(self, jitted: Callable):
    self._jitted = jitted
    self._futures: dict[tuple, concurrent.futures.Future] = {}
    self._lock = threading.Lock()
    self._pool: concurrent.futures.ThreadPoolExecutor | None = None
    self.on_demand = 0  # calls whose shape nobody announced (jit compiled it on first use)

  def compile_ahead(self, leading: tuple, batches: Iterable[dict[str, Any]],
                    threads: int) -> int:
    """Starts compiling each batch shape not compiled yet, in the order given (so list the
    first-needed first); returns how many were started. `leading` and `batches` may be
    arrays or `jax.ShapeDtypeStruct`s (with their shardings)."""
    started = 0
    with self._lock:
      for batch in batches:
        key = batch_key(batch)
        if key in self._futures:
          continue
        if self._pool is None:
          self._pool = concurrent.futures.ThreadPoolExecutor(
              max(1, int(threads)), thread_name_prefix="compile_ahead")
        self._futures[key] = self._pool.submit(self._compile, leading, batch)
        started += 1
    return started

  def lower(self, *args: Any) -> Any:
    """The jitted function's `lower` (the planner compiles through it)."""
    return self._jitted.lower(*args)

  def _compile(self, leading: tuple, batch: dict[str, Any]) -> Any:
    compiled = self._jitted.lower(*leading, batch).compile()
    host_memory.release_free_memory()  # the compiler's freed memory, kept by this thread
    return compiled

  def cancel_pending(self) -> None:
    """Drops the compilations that have not started (e.g. the run stopped early)."""
    with self._lock:
      for key, future in list(self._futures.items()):
        if future.cancel():
          del self._futures[key]

  def wait(self) -> None:
    """Blocks until every announced shape has compiled (raises a failed compilation)."""
    for future in list(self._futures.values()):
      future.result()

  @property
  def num_compiled(self) -> int:
    return sum(1 for f in self._futures.values() if f.done() and f.exception() is None)

  def __call__(self, *args: Any) -> Any:
    future = self._futures.get(batch_key(args[-1]))
    if future is None:
      self.on_demand += 1
      return self._jitted(*args)
    return future.result()(*args)


class SplitTrainStep:
  """train_step(state, batch) -> (state, metrics) as two programs: the gradient, compiled
  per batch shape (a `CompiledByShape`), then the optimiser update, compiled once.

  Why: the update's shapes are the parameters', whatever the batch, yet inside one train
  program XLA compiles it again for every batch shape: ~2.4 s of the ~8.5 s XLA compile
  of each MiniLM train shape on 2 cores (12 shapes on BioASQ's 384-piece windows). Split,
  each further shape compiles the gradient alone. The update reads the gradients from
  memory either way (the global norm needs all of them before any parameter moves).

  grad_jitted(state, batch) -> (grads, metrics with "loss");
  update_jitted(state, grads, {"loss": loss}) -> (new_state, metrics); train.step's
  make_loss_grad_step / make_update_step with jit_grad_step / jit_update_step.
  """

  def __init__(self, grad_jitted: Callable, update_jitted: Callable):
    self.grad = CompiledByShape(grad_jitted)
    self.update = CompiledByShape(update_jitted)

  def compile_ahead(self, leading: tuple, batches: Iterable[dict[str, Any]],
                    threads: int) -> int:
    """As CompiledByShape.compile_ahead, leading = (state,): the first batch shape, then
    the update (needed right after it), then the other shapes. Returns how many batch
    shapes were started."""
    (state,), batches = leading, list(batches)
    started = self.grad.compile_ahead(leading, batches[:1], threads)
    loss = {"loss": jax.ShapeDtypeStruct((), np.float32)}  # make_loss_grad_step's dtype
    self.update.compile_ahead((state, abstract(state["params"])), [loss], threads)
    return started + self.grad.compile_ahead(leading, batches[1:], threads)

  def cancel_pending(self) -> None:
    self.grad.cancel_pending()
    self.update.cancel_pending()

  def wait(self) -> None:
    self.grad.wait()
    self.update.wait()

  @property
  def num_compiled(self) -> int:
    """Batch shapes compiled ahead (the update not counted)."""
    return self.grad.num_compiled

  @property
  def on_demand(self) -> int:
    """Calls that found their program not announced (gradient or update)."""
    return self.grad.on_demand + self.update.on_demand

  def __call__(self, state: dict, batch: dict[str, Any]) -> tuple[dict, dict]:
    grads, metrics = self.grad(state, batch)
    state, update_metrics = self.update(state, grads, {"loss": metrics["loss"]})
    return state, dict(metrics, **update_metrics)


def abstract(tree: Any) -> Any:
  """Arrays -> `jax.ShapeDtypeStruct`s with the same shapes, dtypes and shardings."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)


__all__ = ["CompiledByShape", "SplitTrainStep", "abstract", "batch_key"]
