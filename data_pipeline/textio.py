r"""Reading task input as UTF-8 text or JSON: errors name file and line, a leading BOM is
dropped, lines end at "\n" only.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Any
from collections.abc import Iterator

from data_pipeline.errors import InputError

from biobert_jax import fs

BOM = "\ufeff"


def _decode(raw: bytes, path: str | os.PathLike, lineno: int, errors: str) -> str:
  try:
    return raw.decode("utf-8", errors=errors)
  except UnicodeDecodeError as e:
    raise InputError(f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line "
                     f"({raw[e.start:e.end]!r}); the file must be UTF-8") from None


def iter_lines(path: str | os.PathLike, errors: str = "strict") -> Iterator[tuple[int, str]]:
  """(1-based line number, line without its "\n" / "\r\n") for every line of `path`.

  errors: "strict" raises `InputError` naming the file, line and byte on invalid UTF-8;
    "replace" substitutes U+FFFD (pre-training text: every tokenizer here then drops it,
    as BERT's `_clean_text` does, so a bad byte simply vanishes from the tokens).
  """
  if errors not in ("strict", "replace"):
    raise ValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
  with fs.open(path, "rb") as handle:
    for lineno, raw in enumerate(handle, start=1):
      line = _decode(raw, path, lineno, errors)
      if lineno == 1 and line.startswith(BOM):
        line = line[1:]
      if line.endswith("\n"):
        line = line[:-2] if line.endswith("\r\n") else line[:-1]
      yield lineno, line


@contextlib.contextmanager
def open_lines(path: str | os.PathLike) -> Iterator[Iterator[tuple[int, str]]]:
  """`with open_lines(path) as lines: for lineno, line in lines:` (see iter_lines)."""
  lines = iter_lines(path)
  try:
    yield lines
  finally:
    lines.close()


def read_json(path: str | os.PathLike) -> Any:
  """The parsed JSON of a UTF-8 file (a leading BOM is allowed)."""
  with fs.open(path, "rb") as handle:
    raw = handle.read()
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    lineno = raw.count(b"\n", 0, e.start) + 1
    raise InputError(f"{path}:{lineno}: invalid UTF-8 ({raw[e.start:e.end]!r}); the file "
                     "must be UTF-8") from None
  try:
    return json.loads(text[1:] if text.startswith(BOM) else text)
  except json.JSONDecodeError as e:
    raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
  except RecursionError:
    raise InputError(f"{path}: JSON nested too deeply") from None
