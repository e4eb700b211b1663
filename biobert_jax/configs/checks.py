"""The rule helpers the config modules declare their checks with: each failure is one line
naming the key, the value and the rule (`config.<key>=<value>: <rule>`).
"""
from __future__ import annotations

import math
from typing import Any
from collections.abc import Iterable, Mapping

import jax

from biobert_jax import fs, sharding

MESH_AXES = ("data", "fsdp", "tensor")


class ConfigError(ValueError):
  """A config value outside what the trainer accepts; names key, value and the rule."""


def fail(key: str, value: Any, allowed: str) -> None:
  raise ConfigError(f"config.{key}={value!r}: {allowed}")


def lookup(config: Any, key: str) -> tuple[bool, Any]:
  """(present, value) of a dotted key; absent keys are not checked (partial configs)."""
  node = config
  for part in key.split("."):
    if not (isinstance(node, Mapping) or hasattr(node, "keys")) or part not in node:
      return False, None
    node = node[part]
  return True, node


def _number(key: str, value: Any, integer: bool) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    fail(key, value, f"must be {'an integer' if integer else 'a number'}")
  if integer and float(value) != int(value):
    fail(key, value, "must be an integer")
  if not math.isfinite(value):
    fail(key, value, "must be finite")
  return value


def check_range(config: Any, key: str, *, integer: bool = False, low: float | None = None,
                high: float | None = None, low_open: bool = False, high_open: bool = False,
                note: str = "") -> None:
  present, value = lookup(config, key)
  if not present:
    return
  value = _number(key, value, integer)
  too_low = low is not None and (value <= low if low_open else value < low)
  too_high = high is not None and (value >= high if high_open else value > high)
  if too_low or too_high:
    lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
    rule = " and ".join(r for r in (lo, hi) if r)
    fail(key, value, f"must be {'an integer ' if integer else ''}{rule}{note}")


def positive_int(config: Any, *keys: str) -> None:
  for key in keys:
    check_range(config, key, integer=True, low=1)


def non_negative_int(config: Any, *keys: str) -> None:
  for key in keys:
    check_range(config, key, integer=True, low=0)


def choice(config: Any, key: str, choices: Iterable[Any]) -> None:
  present, value = lookup(config, key)
  choices = tuple(choices)
  if present and value not in choices:
    fail(key, value, f"must be one of {', '.join(repr(c) for c in choices)}")


def existing_path(config: Any, key: str, what: str) -> None:
  present, value = lookup(config, key)
  if present and value and not fs.exists(str(value)):
    fail(key, value, f"no such {what}")


def mesh(config: Any, device_count: int | None) -> tuple[int, int, int] | None:
  """The resolved (data, fsdp, tensor) shape, or None when the config has no mesh."""
  if not lookup(config, "mesh")[0]:
    return None
  choice(config, "mesh.auto", (True, False))
  if lookup(config, "mesh.auto")[1]:  # the axes are searched for (trainers/auto_mesh.py)
    return None
  sizes = {}
  for axis in MESH_AXES:
    has, value = lookup(config, f"mesh.{axis}")
    value = value if has else (-1 if axis == "fsdp" else 1)
    if isinstance(value, bool) or not isinstance(value, int):
      fail(f"mesh.{axis}", value, "must be a positive integer or -1 (the rest)")
    sizes[axis] = value
  if device_count is None:
    device_count = jax.device_count()
  try:
    return sharding.resolve_mesh_shape(sizes["data"], sizes["fsdp"], sizes["tensor"],
                                       device_count)
  except ValueError as e:
    raise ConfigError(f"config.mesh: {e}") from None
