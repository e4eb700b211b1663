"""Corpus readers for pre-training (PubMed XML, PMC JATS, text): `read_documents` dispatches
on `file_format`.
"""
from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

from data_pipeline.corpora.pmc import read_pmc
from data_pipeline.corpora.pubmed_xml import read_pubmed_xml
from data_pipeline.corpora.records import (CorpusError, Document, ReadStats,
                                           check_on_error)
from data_pipeline.corpora.sentences import split_sentences
from data_pipeline.corpora.text import read_bert_format, read_doc_per_line

READERS: dict[str, Callable[..., Iterator[Document]]] = {
    "pubmed_xml": read_pubmed_xml,
    "pmc": read_pmc,
    "text_doc_per_line": read_doc_per_line,
    "text_bert": read_bert_format,
}


def read_documents(path: str | pathlib.Path, file_format: str, on_error: str = "raise",
                   stats: ReadStats | None = None) -> Iterator[Document]:
  """Streams the documents of one file in the given format."""
  if file_format not in READERS:
    raise ValueError(f"file_format must be one of {sorted(READERS)}, got {file_format!r}")
  return READERS[file_format](path, on_error=on_error, stats=stats)


__all__ = ["CorpusError", "Document", "READERS", "ReadStats", "check_on_error",
           "read_documents", "split_sentences"]
