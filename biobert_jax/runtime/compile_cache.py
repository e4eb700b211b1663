"""A persistent XLA compilation cache for the command-line mains, on by default (docs/cpu.md).

Directory: `JAX_COMPILATION_CACHE_DIR` or an earlier jax config wins, else
`$BIOBERT_JAX_COMPILATION_CACHE` (`off` disables), else `~/.cache/biobert_jax/xla`; the
last two are size-bounded. An entry JAX cannot read is removed, so the recompiled program
replaces it (JAX alone would keep the bad entry).
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
  if current:  # the caller's (JAX's variable or config): its bound is the caller's too
    _replace_unreadable_entries()
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
  if (importlib.util.find_spec("filelock") is not None
      and jax.config.jax_compilation_cache_max_size == -1):
    # JAX's LRU eviction locks the directory with `filelock`; without it JAX refuses a
    # size bound, so the directory is left unbounded rather than breaking compiles.
    # The default and the $BIOBERT_JAX_COMPILATION_CACHE directory alike.
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
  _replace_unreadable_entries()
  return directory


def _replace_unreadable_entries() -> None:
  """Removes a cache entry JAX cannot read, so that the executable it then compiles takes
  its place: JAX warns and compiles, but its `put` skips an existing key, so a corrupted
  entry would be read, warned about and recompiled by every later run."""
  from jax._src import compilation_cache as jax_cache
  original = jax_cache.get_executable_and_time
  if getattr(original, "replaces_unreadable", False):
    return

  def get_executable_and_time(cache_key, *args, **kwargs):
    try:
      return original(cache_key, *args, **kwargs)
    except Exception:
      directory = jax.config.jax_compilation_cache_dir
      if directory and "://" not in directory:
        for suffix in ("-cache", "-atime"):
          path = os.path.join(directory, f"{cache_key}{suffix}")
          if os.path.exists(path):
            os.remove(path)
        logging.warning("compilation cache: removed the unreadable entry %s from %s; the "
                        "program is compiled and stored again", cache_key, directory)
      raise

  get_executable_and_time.replaces_unreadable = True
  jax_cache.get_executable_and_time = get_executable_and_time


__all__ = ["use_persistent_cache", "default_directory", "ENV_VAR"]
