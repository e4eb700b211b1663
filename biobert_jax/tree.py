"""Parameter trees as flat '/'-joined paths, and `merge_params`, the one merge of loaded
params into fresh ones.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any
from collections.abc import Callable, Iterable, Mapping

import jax
import numpy as np


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{'a': {'b': x}} -> {'a/b': x} (nested mappings only; leaves are anything else)."""
  out = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flatten(value, path + "/"))
    else:
      out[path] = value
  return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """{'a/b': x} -> {'a': {'b': x}}."""
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def path_str(key_path: Iterable[Any]) -> str:
  """A jax key path (DictKey/GetAttrKey/SequenceKey entries) as 'a/b/0'."""
  parts = []
  for k in key_path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def shape_of(x: Any) -> tuple[int, ...]:
  return tuple(int(d) for d in np.shape(x))


def matches_any(path: str, patterns: Iterable[str | re.Pattern]) -> bool:
  return any(re.search(p, path) for p in patterns)


@dataclasses.dataclass
class MergeResult:
  """What `merge_params` did, by '/'-joined path -> shape."""
  loaded: dict[str, list[int]] = dataclasses.field(default_factory=dict)
  new: dict[str, list[int]] = dataclasses.field(default_factory=dict)
  dropped: dict[str, list[int]] = dataclasses.field(default_factory=dict)
  reinitialized: dict[str, list[int]] = dataclasses.field(default_factory=dict)


class MergeError(ValueError):
  """A loaded leaf does not fit the fresh tree (the message names the path and shapes)."""


def merge_params(fresh: Mapping[str, Any], loaded: Mapping[str, Any], *,
                 take: Callable[[str], bool] = lambda path: True,
                 reinit: Iterable[str] = (),
                 mismatch_message: Callable[[str, tuple, tuple], str] | None = None,
                 cast: Callable[[Any, Any], Any] | None = None,
                 ) -> tuple[dict[str, Any], MergeResult]:
  """Fresh params with every leaf that `loaded` has at the same path copied in.

  Args:
    fresh: the target tree (structure, shapes and dtypes of the result).
    loaded: a tree of loaded values (any subset of paths; others are reported dropped).
    take: path -> whether this fresh path may be taken from `loaded` at all.
    reinit: regexes of paths to keep fresh although `loaded` has them.
    mismatch_message: builds the error for a shape mismatch (path, fresh shape, loaded
      shape); the default names all three.
    cast: (loaded value, fresh value) -> value; default numpy array in the fresh dtype.

  Returns:
    (merged tree, MergeResult).

  Raises:
    MergeError: a taken leaf whose shape differs from the fresh one.
  """
  fresh_flat = flatten(fresh)
  loaded_flat = flatten(loaded)
  reinit = [re.compile(p) for p in reinit]
  cast = cast or (lambda value, like: np.asarray(value, dtype=np.asarray(like).dtype
                                                 if not isinstance(like, jax.Array)
                                                 else like.dtype))
  result = MergeResult()
  out = {}
  for path, value in fresh_flat.items():
    if not take(path) or path not in loaded_flat:
      out[path] = value
      result.new[path] = list(shape_of(value))
      continue
    if matches_any(path, reinit):
      out[path] = value
      result.reinitialized[path] = list(shape_of(value))
      continue
    candidate = loaded_flat[path]
    if shape_of(candidate) != shape_of(value):
      message = (mismatch_message or _default_mismatch)(path, shape_of(value),
                                                         shape_of(candidate))
      raise MergeError(message)
    out[path] = cast(candidate, value)
    result.loaded[path] = list(shape_of(value))
  for path, value in loaded_flat.items():
    if path not in fresh_flat:
      result.dropped[path] = list(shape_of(value))
  return unflatten(out), result


def _default_mismatch(path: str, fresh_shape: tuple, loaded_shape: tuple) -> str:
  return f"{path}: loaded shape {list(loaded_shape)}, the model wants {list(fresh_shape)}"
