"""Keep XLA:CPU's per-step temp buffer in the heap instead of faulting it in every step.

`keep_host_buffers()` (inline dispatch + mallopt) must run before JAX creates its CPU client;
`BIOBERT_JAX_HOST_MALLOC=system` opts out. Why and what it costs: docs/cpu.md.
"""
from __future__ import annotations

import ctypes
import os
import sys

import jax
from absl import logging
from jax._src import xla_bridge  # backends_are_initialized has no public alias in jax 0.10

ENV_VAR = "BIOBERT_JAX_HOST_MALLOC"
_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_MAX = -4
_INT_MAX = 2 ** 31 - 1  # mallopt takes an int: trim only beyond 2 GiB free at the heap top


def _glibc_mallopt():
  """glibc's mallopt, or None on other C libraries and systems."""
  if not sys.platform.startswith("linux"):
    return None
  try:
    libc = ctypes.CDLL(None)
    libc.gnu_get_libc_version  # glibc only
    return libc.mallopt
  except (OSError, AttributeError):
    return None


_kept = False  # whether keep_host_buffers took effect in this process


def keep_host_buffers() -> bool:
  """Applies the settings above; True when they took effect.

  Call it before the first JAX computation. It does nothing when the environment opts out,
  and logs why when the C library is not glibc or JAX's backends already exist (then the
  async-dispatch setting could no longer change).
  """
  if os.environ.get(ENV_VAR, "").lower() == "system":
    return False
  mallopt = _glibc_mallopt()
  if mallopt is None:
    logging.info("host memory: not glibc, malloc left as is")
    return False
  if xla_bridge.backends_are_initialized():
    logging.warning("host memory: JAX's backends already exist, so XLA:CPU's step buffers "
                    "stay re-faulted each step; call host_memory.keep_host_buffers() first")
    return False
  global _kept
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  _kept = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
  return _kept


def release_free_memory() -> None:
  """Returns every arena's free memory to the system (`malloc_trim`), where
  keep_host_buffers holds it: after work whose memory is not needed again, such as a
  compilation. The next step faults its buffer in once more."""
  if _kept:
    ctypes.CDLL(None).malloc_trim(0)


__all__ = ["keep_host_buffers", "release_free_memory", "ENV_VAR"]
