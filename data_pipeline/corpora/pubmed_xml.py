"""Streaming reader of PubMed/MEDLINE baseline XML (both layouts): title + abstract sections,
labelled sections prefixed as PubMed shows them.

`<PubmedBookArticle>` records are read like citations; other top-level elements are counted
in `skipped_other`. Broken XML, invalid UTF-8 and truncated gzip end the file with an error
naming the file and line (or, under on_error="skip", a counted skip).
"""
from __future__ import annotations

import pathlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from data_pipeline.corpora import io as corpus_io
from data_pipeline.corpora.records import Document, ReadStats, check_on_error, handle_error
from data_pipeline.corpora.sentences import split_sentences

_SPACES = re.compile(r"\s+")
_READ_ERRORS = corpus_io.READ_ERRORS


def element_text(element: ET.Element | None) -> str:
  """All text inside `element` (markup flattened), whitespace collapsed."""
  if element is None:
    return ""
  return _SPACES.sub(" ", "".join(element.itertext())).strip()


def citation_sentences(citation: ET.Element, include_title: bool = True) -> list[str]:
  """Title + abstract sentences of one `<MedlineCitation>` or `<BookDocument>` (a
  `<PubmedBookArticle>`'s record); [] when it has no abstract."""
  article = citation if citation.tag == "BookDocument" else citation.find("Article")
  abstract = article.find("Abstract") if article is not None else None
  sections = abstract.findall("AbstractText") if abstract is not None else []
  sentences: list[str] = []
  for section in sections:
    section_sentences = split_sentences(element_text(section))
    label = section.get("Label", "").strip()
    if label and section_sentences:
      section_sentences[0] = f"{label}: {section_sentences[0]}"
    sentences.extend(section_sentences)
  if not sentences:
    return []
  title = element_text(article.find("ArticleTitle")) if include_title else ""
  return ([title] if title else []) + sentences


def read_pubmed_xml(path: str | pathlib.Path, on_error: str = "raise",
                    stats: ReadStats | None = None,
                    include_title: bool = True) -> Iterator[Document]:
  """Yields one `Document` (doc_id = PMID) per citation with an abstract."""
  check_on_error(on_error)
  stats = stats if stats is not None else ReadStats()
  path = str(path)
  stats.files += 1
  record = 0
  root = None
  with corpus_io.open_binary(path) as handle:
    parser = ET.iterparse(handle, events=("start", "end"))
    try:
      depth = 0  # of `element` below the root (root = 0) at its "end" event
      for event, element in parser:
        if event == "start":
          if root is None:
            root = element
          depth += 1
          continue
        depth -= 1
        if element.tag in ("MedlineCitation", "BookDocument"):
          record += 1
          pmid = element.findtext("PMID", default="").strip()
          if not pmid:
            handle_error(f"{path}: record {record} (<{element.tag}>): no PMID",
                         on_error, stats)
          else:
            sentences = citation_sentences(element, include_title)
            if sentences:
              stats.documents += 1
              stats.sentences += len(sentences)
              yield Document(pmid, tuple(sentences))
            else:
              stats.skipped_no_text += 1
          element.clear()
        elif element.tag == "DeleteCitation":
          stats.skipped_deleted += 1
        elif depth == 1 and element.tag not in ("PubmedArticle", "PubmedBookArticle"):
          stats.skipped_other += 1
        if depth == 1:
          root.clear()  # a finished top-level record: drop it from the root too
    except ET.ParseError as e:
      line, column = e.position
      handle_error(f"{path}:{line}:{column}: malformed XML after record {record} ({e})",
                   on_error, stats)
    except _READ_ERRORS as e:
      handle_error(f"{path}: unreadable or truncated file after record {record} "
                   f"({type(e).__name__}: {e})", on_error, stats)
