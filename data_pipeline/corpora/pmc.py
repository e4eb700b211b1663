"""Streaming reader of PMC full text in JATS XML: title, abstract and body paragraphs (no
back matter, tables, figures or formulas).
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
_DROPPED = frozenset({"table-wrap", "table", "fig", "fig-group", "disp-formula",
                      "supplementary-material", "graphic", "media", "ref-list"})
_SKIPPED_ABSTRACT_TYPES = frozenset({"graphical", "teaser"})


def _text_without(element: ET.Element, parts: list[str]) -> None:
  """Appends the text of `element` to `parts`, skipping the subtrees in _DROPPED."""
  if element.text:
    parts.append(element.text)
  for child in element:
    if child.tag not in _DROPPED:
      _text_without(child, parts)
    if child.tail:
      parts.append(child.tail)


def paragraph_texts(container: ET.Element | None) -> list[str]:
  """The text of every `<p>` under `container` in document order (whitespace collapsed)."""
  if container is None:
    return []
  paragraphs: list[str] = []
  stack = [container]
  # Depth-first in document order, not descending into dropped subtrees.
  while stack:
    node = stack.pop()
    if node.tag == "p":
      parts: list[str] = []
      _text_without(node, parts)
      text = _SPACES.sub(" ", "".join(parts)).strip()
      if text:
        paragraphs.append(text)
      continue  # nested <p> (e.g. in <list>) is part of this paragraph's text
    stack.extend(child for child in reversed(list(node)) if child.tag not in _DROPPED)
  return paragraphs


def article_parts(article: ET.Element) -> tuple[str, str, list[str]]:
  """(doc_id, title, abstract + body paragraphs) of one JATS `<article>`; doc_id "" when
  it has no id."""
  meta = article.find("front/article-meta")
  ids = {}
  title = ""
  paragraphs: list[str] = []
  if meta is not None:
    ids = {node.get("pub-id-type"): (node.text or "").strip()
           for node in meta.findall("article-id")}
    title_node = meta.find("title-group/article-title")
    if title_node is not None:
      title = _SPACES.sub(" ", "".join(title_node.itertext())).strip()
    for abstract in meta.findall("abstract"):
      if abstract.get("abstract-type") not in _SKIPPED_ABSTRACT_TYPES:
        paragraphs.extend(paragraph_texts(abstract))
  doc_id = f"PMC{ids['pmc']}" if ids.get("pmc") else ids.get("pmid", "")
  return doc_id, title, paragraphs + paragraph_texts(article.find("body"))


def article_document(article: ET.Element) -> tuple[str, list[str]]:
  """(doc_id, sentences) of one JATS `<article>`; doc_id is "" when it has no id."""
  doc_id, title, paragraphs = article_parts(article)
  sentences = [s for p in paragraphs for s in split_sentences(p)]
  if sentences and title:
    sentences = [title] + sentences
  return doc_id, sentences


def read_pmc(path: str | pathlib.Path, on_error: str = "raise",
             stats: ReadStats | None = None) -> Iterator[Document]:
  """Yields one `Document` per `<article>` with abstract or body text."""
  check_on_error(on_error)
  stats = stats if stats is not None else ReadStats()
  path = str(path)
  stats.files += 1
  record = 0
  with corpus_io.open_binary(path) as handle:
    try:
      for _, element in ET.iterparse(handle, events=("end",)):
        if element.tag != "article":
          continue
        record += 1
        doc_id, sentences = article_document(element)
        element.clear()
        if not doc_id:
          handle_error(f"{path}: article {record}: no pmc/pmid <article-id>", on_error,
                       stats)
        elif not sentences:
          stats.skipped_no_text += 1
        else:
          stats.documents += 1
          stats.sentences += len(sentences)
          yield Document(doc_id, tuple(sentences))
    except ET.ParseError as e:
      line, column = e.position
      handle_error(f"{path}:{line}:{column}: malformed XML after article {record} ({e})",
                   on_error, stats)
    except _READ_ERRORS as e:
      handle_error(f"{path}: unreadable or truncated file after article {record} "
                   f"({type(e).__name__}: {e})", on_error, stats)
