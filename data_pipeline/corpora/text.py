"""Plain-text corpora: one document per line (`text_doc_per_line`) or BERT's format
(`text_bert`: a sentence per line, blank lines between documents).
"""
from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

from data_pipeline.corpora import io as corpus_io
from data_pipeline.corpora.records import Document, ReadStats, check_on_error, handle_error
from data_pipeline.corpora.sentences import split_sentences

_READ_ERRORS = corpus_io.READ_ERRORS


def _decoded_lines(path: str, on_error: str, stats: ReadStats) -> Iterator[tuple[int, str]]:
  number = 0
  try:
    for number, raw in corpus_io.open_text_lines(path):
      try:
        line = raw.decode("utf-8").rstrip("\r\n")
        # A byte-order mark opening the file is not text (it would start document 1).
        yield number, line[1:] if number == 1 and line.startswith("\ufeff") else line
      except UnicodeDecodeError as e:
        handle_error(f"{path}:{number}: invalid UTF-8 ({e.reason} at byte {e.start})",
                     on_error, stats)
  except _READ_ERRORS as e:
    handle_error(f"{path}:{number + 1}: unreadable or truncated file, rest of the file "
                 f"lost ({type(e).__name__}: {e})", on_error, stats)


def read_doc_per_line(path: str | pathlib.Path, on_error: str = "raise",
                      stats: ReadStats | None = None) -> Iterator[Document]:
  """Yields one `Document` per non-empty line, split into sentences."""
  check_on_error(on_error)
  stats = stats if stats is not None else ReadStats()
  path = str(path)
  stats.files += 1
  name = os.path.basename(path)
  for number, line in _decoded_lines(path, on_error, stats):
    sentences = split_sentences(line)
    if not sentences:
      continue  # blank line: nothing to count
    stats.documents += 1
    stats.sentences += len(sentences)
    yield Document(f"{name}:{number}", tuple(sentences))


def read_bert_format(path: str | pathlib.Path, on_error: str = "raise",
                     stats: ReadStats | None = None) -> Iterator[Document]:
  """Yields documents of the BERT format: sentence lines, blank line between documents."""
  check_on_error(on_error)
  stats = stats if stats is not None else ReadStats()
  path = str(path)
  stats.files += 1
  name = os.path.basename(path)
  sentences: list[str] = []
  first_line = 0
  for number, line in _decoded_lines(path, on_error, stats):
    line = line.strip()
    if line:
      if not sentences:
        first_line = number
      sentences.append(line)
      continue
    if sentences:
      stats.documents += 1
      stats.sentences += len(sentences)
      yield Document(f"{name}:{first_line}", tuple(sentences))
      sentences = []
  if sentences:
    stats.documents += 1
    stats.sentences += len(sentences)
    yield Document(f"{name}:{first_line}", tuple(sentences))
