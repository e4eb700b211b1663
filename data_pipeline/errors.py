"""The one error type for bad input data: every reader raises it (or a subclass).

The message starts with where the problem is (`path:line:` or `path: record <id>:`) and
says what is wrong, so a user sees one clear line. Readers never let a bare
UnicodeDecodeError, KeyError, json.JSONDecodeError or IndexError escape for bad input.
"""
from __future__ import annotations


class InputError(ValueError):
  """Malformed input data; the message names the file and the line, record or key."""


def where(path, line: int | None = None) -> str:
  """'path:line' (or 'path') for the start of an InputError message."""
  return f"{path}:{line}" if line is not None else f"{path}"
