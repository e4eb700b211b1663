"""A persistent XLA compilation cache for the command-line mains, on by default (docs/cpu.md).

Directory: `JAX_COMPILATION_CACHE_DIR` or an earlier jax config wins, else
`$BIOBERT_JAX_COMPILATION_CACHE` (`off` disables), else `~/.cache/biobert_jax/xla`.
"""
from __future__ import annotations

import importlib.util
import os

import jax
from absl import logging

ENV_VAR = "BIOBERT_JAX_COMPILATION_CACHE"
MAX_BYTES = 4 << 30  # LRU bound of the default directory


def default_directory() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "biobert_jax", "xla")


def use_persistent_cache() -> str | None:
  """Points JAX's persistent compilation cache at the directory chosen above (made if
  missing). Returns the directory in use, or None when the cache is off or unusable (a
  directory that cannot be created is logged and skipped: it only costs speed)."""
  current = jax.config.jax_compilation_cache_dir
  if current:
    return current
  choice = os.environ.get(ENV_VAR, "").strip()
  if choice.lower() == "off":
    return None
  directory = choice or default_directory()
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    logging.warning("compilation cache: cannot use %s (%s); compiling without it (set %s "
                    "to a writable directory, or to off)", directory, e, ENV_VAR)
    return None
  jax.config.update("jax_compilation_cache_dir", directory)
  if not choice and importlib.util.find_spec("filelock") is not None:
    # JAX's LRU eviction locks the directory with `filelock`; without it JAX refuses a
    # size bound, so the directory is left unbounded rather than breaking compiles.
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
  return directory


__all__ = ["use_persistent_cache", "default_directory", "ENV_VAR"]
