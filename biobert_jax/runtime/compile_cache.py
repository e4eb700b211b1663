"""A persistent XLA compilation cache for the command-line mains, on by default.

Why: a cold fine-tune compiles one train program per batch shape plus one predict program
per evaluation shape. For MiniLM on a 2-core CPU each train shape costs ~2.5 s of tracing
and ~8-10 s of XLA (~14 s of CPU), so GAD's 4 + 4 shapes cost ~45 s of a ~12 min run and
BioASQ's 8 + 4 more; torch pays nothing of the kind. Most runs repeat a program someone
already compiled: other seeds, a resumed run, the same annotation on new files. JAX's
persistent cache serves those from disk (MiniLM's L=64 train step: XLA 8.5 s cold, 1.8 s
from the cache; tracing and lowering are still paid).

Safe by construction: JAX keys an entry by the lowered program, the compile options, the
jax/jaxlib versions and the device kind, so a hit is the executable the compiler would
have built; results never change. Entries are a few MB on CPU; the directory is bounded
(`jax_compilation_cache_max_size`, least recently used entries evicted; the bound needs the
`filelock` package, which the torch/transformers test stack brings).

Where:
- `JAX_COMPILATION_CACHE_DIR` (JAX's own variable) or an earlier
  `jax.config.update("jax_compilation_cache_dir", ...)` wins (the tests and the main job
  set their own);
- else `$BIOBERT_JAX_COMPILATION_CACHE`, where `off` disables it;
- else `$XDG_CACHE_HOME/biobert_jax/xla` (default `~/.cache/biobert_jax/xla`).
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
