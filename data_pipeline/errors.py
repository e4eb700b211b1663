"""`InputError`: the one error type for bad input, its message starting with where
(`path:line:` or `path: record <id>:`).
"""
from __future__ import annotations


class InputError(ValueError):
  """Malformed input data; the message names the file and the line, record or key."""


def where(path, line: int | None = None) -> str:
  """'path:line' (or 'path') for the start of an InputError message."""
  return f"{path}:{line}" if line is not None else f"{path}"
