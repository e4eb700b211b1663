"""What the process and the compiled programs do differently per platform, decided in one place.

The CPU-tuned machinery was measured on 2-core CPU boxes only:
- `host_memory`: glibc malloc kept from returning XLA:CPU's step buffer, inline dispatch;
- `ahead`: the train step as two programs (`SplitTrainStep`) and every batch shape
  compiled ahead in threads (`CompiledByShape`);
- `dropout_hash`: dropout masks as straight-line threefry (JAX's CPU lowering of
  `jax.random.bernoulli` is a slow loop);
- `xla_options`: Eigen dots for forward-only CPU programs.
On TPU and GPU none of it was measured, so there the trainers compile the standard
one-program step, draw dropout masks with `jax.random.bernoulli` and leave the allocator
alone. The masks are the same bits either way (`dropout_hash` reproduces bernoulli's
stream), so switching platform does not change what is trained. There, too, an encoder
layer without remat keeps only the activations the analytic estimate counts
(`models.encoder.SAVED_ACTIVATIONS`) and recomputes the elementwise rest: accelerator
memory is what limits a pod step; on CPU autodiff's own choice stays, as measured.

`for_devices(mesh.devices.flat)` is the switch the trainers use; `host_platform()` decides
it for the process before JAX's backends exist (the allocator settings must come first);
`setup_process()` is what every main (and the notebooks) calls.
The persistent compilation cache is kept on every platform: a hit is the compiler's own
executable, and a restarted pod job gains the most from it.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import os
from typing import Any
from collections.abc import Callable, Iterator, Sequence

import jax

from biobert_jax.runtime import compile_cache, host_memory

PLATFORMS = ("cpu", "gpu", "tpu")


@dataclasses.dataclass(frozen=True)
class Runtime:
  """The choices for one platform (see the module docstring for why each exists)."""
  platform: str
  keep_host_buffers: bool      # host_memory.keep_host_buffers at process start
  split_train_step: bool       # fine-tuning: gradient and update as two programs
  compile_ahead: bool          # every batch shape compiled ahead, in threads
  dropout_hash: bool           # straight-line threefry dropout masks
  save_named_activations: bool  # layers keep SAVED_ACTIVATIONS only (accelerator memory)
  persistent_cache: bool = True

  def traced(self, fn: Callable) -> Callable:
    """`fn`, whose tracing sees this runtime (dropout reads it while the model traces).
    The setting lives inside the call, so a trace in a compile thread sees it too."""
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
      with active(self):
        return fn(*args, **kwargs)
    return wrapped


def for_platform(platform: str) -> Runtime:
  """The runtime of a JAX platform name ("cpu", "gpu" or "cuda"/"rocm", "tpu")."""
  name = {"cuda": "gpu", "rocm": "gpu"}.get(str(platform).lower(), str(platform).lower())
  if name not in PLATFORMS:
    raise ValueError(f"unknown platform {platform!r}; valid: {', '.join(PLATFORMS)}")
  cpu = name == "cpu"
  return Runtime(platform=name, keep_host_buffers=cpu, split_train_step=cpu,
                 compile_ahead=cpu, dropout_hash=cpu, save_named_activations=not cpu)


def for_devices(devices: Sequence[Any]) -> Runtime:
  """The runtime of the devices a program runs on (a mesh's `devices.flat`)."""
  devices = list(devices)
  if not devices:
    raise ValueError("for_devices: no devices")
  return for_platform(devices[0].platform)


def _configured_platforms() -> str:
  return (jax.config.jax_platforms or os.environ.get("JAX_PLATFORMS", "")).strip()


def host_platform() -> str:
  """The platform JAX will pick, found without starting its backends: the first of
  JAX_PLATFORMS (or jax_platforms) when set, else TPU or NVIDIA chips seen on PCI / /dev,
  else cpu."""
  from jax._src import hardware_utils  # no public alias in jax 0.10
  chosen = _configured_platforms()
  if chosen:
    return for_platform(chosen.split(",")[0]).platform
  if hardware_utils.num_available_tpu_chips_and_device_id()[0]:
    return "tpu"
  if hardware_utils.has_visible_nvidia_gpu():
    return "gpu"
  return "cpu"


def setup_process(platform: str | None = None, *, cache: bool = True) -> Runtime:
  """The process-wide settings of `platform` (default `host_platform()`): call it first,
  before any JAX computation. `cache=False` leaves the compilation cache to the caller.
  Returns the runtime."""
  runtime = for_platform(platform or host_platform())
  if runtime.keep_host_buffers:
    host_memory.keep_host_buffers()
  if cache and runtime.persistent_cache:
    compile_cache.use_persistent_cache()
  return runtime


_ACTIVE: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "biobert_jax_runtime", default=None)


@contextlib.contextmanager
def active(runtime: Runtime) -> Iterator[Runtime]:
  token = _ACTIVE.set(runtime)
  try:
    yield runtime
  finally:
    _ACTIVE.reset(token)


def current() -> Runtime:
  """The runtime set by `active`/`Runtime.traced`, else that of JAX's default backend."""
  runtime = _ACTIVE.get()
  return runtime if runtime is not None else for_platform(jax.default_backend())


__all__ = ["Runtime", "for_platform", "for_devices", "host_platform", "setup_process",
           "active", "current", "PLATFORMS"]
