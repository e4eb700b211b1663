"""Opening corpus files: transparent gzip, errors that name the file."""
from __future__ import annotations

import gzip
import pathlib
import zlib
from typing import BinaryIO

from biobert_jax import fs

# What reading a corpus file can raise besides a parse error: a truncated or corrupt gzip
# (EOFError, zlib.error, OSError), and LookupError when an XML declaration names an
# encoding Python does not know (expat asks the codecs registry; found by fuzzing).
READ_ERRORS = (EOFError, OSError, zlib.error, LookupError)


def open_binary(path: str | pathlib.Path) -> BinaryIO:
  """Opens `path` for streaming reads; `.gz` files are decompressed on the fly."""
  path = str(path)
  raw = fs.open(path, "rb")
  if path.endswith(".gz"):
    return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
  return raw


def open_text_lines(path: str | pathlib.Path):
  """Yields `(line_number, raw bytes line)` of `path` (1-based), streaming.

  Lines are returned as bytes so that the caller can decode each one and report an
  invalid UTF-8 line by number instead of failing the whole file.
  """
  with open_binary(path) as handle:
    for number, line in enumerate(handle, 1):
      yield number, line
