"""Dotted-key config overrides (`"mesh.fsdp": -1`, `mesh.fsdp=-1`): the one helper that
notebooks, the main job and the tests use to change a config.

Works on `ml_collections.ConfigDict` and on nested dicts alike. An unknown key fails with
the key named (a misspelt override must not be silently added), and a ConfigDict keeps
its type checks: a value of the wrong type fails naming the key.
"""
from __future__ import annotations

import ast
from typing import Any
from collections.abc import Iterable, Mapping


def parse_value(text: str) -> Any:
  """A command-line value: a Python literal (`1e-4`, `True`, `(1, 2)`, `'a'`), anything
  else the text itself."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def parse_assignments(pairs: Iterable[str]) -> dict[str, Any]:
  """["mesh.fsdp=-1", "data.file_format=pubmed_xml"] -> {"mesh.fsdp": -1, ...}.

  Raises:
    ValueError: naming the first entry that is not KEY=VALUE.
  """
  out = {}
  for pair in pairs:
    key, sep, raw = pair.partition("=")
    if not sep or not key:
      raise ValueError(f"bad override {pair!r}: expected KEY=VALUE")
    out[key] = parse_value(raw)
  return out


def _has(node: Any, key: str) -> bool:
  """Whether a config node (a ConfigDict is no `Mapping`, but has keys) holds `key`."""
  return hasattr(node, "keys") and key in node.keys()


def set_dotted(config: Any, key: str, value: Any) -> None:
  """config[a][b][c] = value for key "a.b.c".

  Raises:
    KeyError: `unknown config key 'a.b.c'` when a part of the key is not in the config.
    TypeError: `config.a.b.c=...: <why>` when the config refuses the value's type.
  """
  *parents, leaf = key.split(".")
  node = config
  for i, part in enumerate(parents):
    if not _has(node, part):
      raise KeyError(f"unknown config key {key!r} ({'.'.join(parents[:i + 1])!r} is not in "
                     "the config)")
    node = node[part]
  if not _has(node, leaf):
    raise KeyError(f"unknown config key {key!r}")
  try:
    node[leaf] = value
  except TypeError as e:
    raise TypeError(f"config.{key}={value!r}: {e}") from None


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
  """Sets every dotted key of `overrides` (`set_dotted`), in order; returns `config`."""
  for key, value in overrides.items():
    set_dotted(config, key, value)
  return config


__all__ = ["apply_overrides", "parse_assignments", "parse_value", "set_dotted"]
