"""A jitted step compiled ahead of time, one executable per batch shape, in worker threads.

Why: a fine-tune feeds a few batch shapes (one per length bucket: 4 for NER/GAD at
bucket 32, 12 for BioASQ's 384-piece windows), and jit compiles each when it first
appears: ~2.5 s of tracing plus ~10 s of XLA for MiniLM on a 2-core CPU, one after the
other, while the rest of the machine waits. The run knows every shape before its first
step (the epoch orders and the bucket rule are fixed by the seed), so `compile_ahead`
lowers and compiles them all up front in a thread pool: XLA's compiler releases the GIL,
so the shapes compile in parallel, and those needed later compile while the first steps
run. Calls dispatch on the batch's shapes to the executable compiled for them; a shape
nobody announced falls back to the jitted function (compiled on first use, as before).

The executables are the jitted function's own programs (`jitted.lower(...).compile()`:
same HLO, same options), so results are bit-identical to calling `jitted`, except where
`options_for` adds XLA options for a batch shape (`eigen_dots_from_length`); then every
call with that shape, announced or not, runs the program compiled with them.
"""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable, Iterable, Mapping

import jax
import numpy as np

from biobert_jax import host_memory


# XLA:CPU option that sends dots to Eigen instead of YNNPACK (an empty fusion-type list).
YNNPACK_OFF = {"xla_cpu_experimental_ynn_fusion_type": ""}


def eigen_dots_from_length(min_length: int) -> Callable[[Mapping[str, Any]], dict]:
  """Per-batch XLA options: on CPU, batches whose sequence axis (axis 1 of the [B, L, ...]
  arrays) has at least `min_length` positions compile with Eigen's dots; 0 = never.

  Why: XLA:CPU hands dots to YNNPACK by default, which wins on short sequences and loses
  on long ones. MiniLM, batch 32, 2-core AVX2 box (experiments/benchmarks/xla_flags.py,
  Eigen's speed-up over YNNPACK): train step L=32 0.75x, 64 1.01x, 128 1.02x, 256 1.16x,
  384 1.69x; forward L=64 0.98x, 128 1.18x, 256 1.28x, 384 1.08x. Outputs differ in the
  last bits only (forward max |diff| 7e-7 - 1.4e-6). Other backends get no options.
  """
  def options(batch: Mapping[str, Any]) -> dict:
    if min_length <= 0 or jax.default_backend() != "cpu":
      return {}
    length = max((v.shape[1] for v in batch.values() if len(v.shape) >= 2), default=0)
    return dict(YNNPACK_OFF) if length >= min_length else {}
  return options


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

  def __init__(self, jitted: Callable,
               options_for: Callable[[Mapping[str, Any]], dict] | None = None):
    self._jitted = jitted
    self._options_for = options_for
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

  def _options(self, batch: Mapping[str, Any]) -> dict:
    return self._options_for(batch) if self._options_for is not None else {}

  def _compile(self, leading: tuple, batch: dict[str, Any]) -> Any:
    compiled = self._jitted.lower(*leading, batch).compile(
        compiler_options=self._options(batch) or None)
    host_memory.release_free_memory()  # the compiler's freed memory, kept by this thread
    return compiled

  def cancel_pending(self) -> None:
    """Drops the compilations that have not started (e.g. the run stopped early)."""
    with self._lock:
      for key, future in list(self._futures.items()):
        if future.cancel():
          del self._futures[key]

  @property
  def num_compiled(self) -> int:
    return sum(1 for f in self._futures.values() if f.done() and f.exception() is None)

  def __call__(self, *args: Any) -> Any:
    key = batch_key(args[-1])
    future = self._futures.get(key)
    if future is None:
      self.on_demand += 1
      if not self._options(args[-1]):
        return self._jitted(*args)
      # The same program an announced shape would get (its options), compiled now.
      future = concurrent.futures.Future()
      future.set_result(self._compile(abstract(args[:-1]), abstract(args[-1])))
      with self._lock:
        future = self._futures.setdefault(key, future)
    return future.result()(*args)


def abstract(tree: Any) -> Any:
  """Arrays -> `jax.ShapeDtypeStruct`s with the same shapes, dtypes and shardings."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)


__all__ = ["CompiledByShape", "abstract", "batch_key", "eigen_dots_from_length", "YNNPACK_OFF"]
