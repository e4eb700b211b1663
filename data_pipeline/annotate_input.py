"""Documents to annotate: every record of PubMed/MEDLINE XML, PMC JATS, text or JSONL, with
segments and title offsets; malformed input is counted and logged, never fatal.

Broken XML or gzip ends that file with a logged error and `stats.incomplete` set (the
annotator then never marks it finished). `<PubmedBookArticle>` citations are documents
(counted in `book_articles`); other top-level elements are counted in `skipped_elements`.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from biobert_jax import fs
from data_pipeline.corpora import bioc_reader, pmc
from data_pipeline.corpora.io import READ_ERRORS
from data_pipeline.corpora.pubmed_xml import element_text

FORMATS = ("auto", "pubmed_xml", "pmc", "text", "jsonl", "bioc_xml", "bioc_json")
_MAX_KEPT = 100

log = logging.getLogger("data_pipeline.annotate_input")


@dataclasses.dataclass(frozen=True)
class TextDocument:
  doc_id: str
  text: str
  title_end: int = 0
  segments: tuple[tuple[int, int], ...] = ()
  # The BioCDocument a BioC input was read from (kept, with ours added, by BioC output).
  source: Any = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass
class InputStats:
  """What one file's reading found; JSON-able through `dataclasses.asdict`."""
  documents: int = 0
  empty: int = 0            # records without any text (still written, no entities)
  malformed: int = 0        # records or file tails skipped as unreadable
  deleted: int = 0          # <DeleteCitation> PMIDs
  deleted_ids: list[str] = dataclasses.field(default_factory=list)
  errors: list[str] = dataclasses.field(default_factory=list)  # first messages
  book_articles: int = 0    # <PubmedBookArticle> records (annotated, also in documents)
  # Top-level elements that are no citation, by tag (e.g. {"Foo": 2}): never silently lost.
  skipped_elements: dict[str, int] = dataclasses.field(default_factory=dict)
  # Why reading ended before the end of the file ("" when it was read to the end): such a
  # file's output is never marked finished.
  incomplete: str = ""

  def error(self, message: str) -> None:
    self.malformed += 1
    if len(self.errors) < _MAX_KEPT:
      self.errors.append(message)
    log.warning("skipped malformed input: %s", message)

  def ended_early(self, message: str) -> None:
    self.incomplete = message
    self.error(message)


def join_segments(parts: list[str], title: str = "") -> TextDocument:
  """Text = non-empty parts joined by " " (title first); spans of each part kept."""
  pieces = ([title] if title else []) + [p for p in parts if p]
  segments, position = [], 0
  for piece in pieces:
    segments.append((position, position + len(piece)))
    position += len(piece) + 1
  return TextDocument("", " ".join(pieces), len(title), tuple(segments))


def detect_format(path: str) -> str:
  """bioc_xml | bioc_json by content (any name), else pubmed_xml | pmc | text | jsonl from
  the name, sniffing the root of .xml files."""
  try:
    bioc_kind = bioc_reader.sniff(bioc_reader.read_head(path))
  except READ_ERRORS as e:
    raise ValueError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
  if bioc_kind:
    return bioc_kind
  name = path.lower().removesuffix(".gz")
  if name.endswith(".nxml"):
    return "pmc"
  if name.endswith(".jsonl"):
    return "jsonl"
  if name.endswith(".txt"):
    return "text"
  if name.endswith(".xml"):
    try:
      with fs.open(path, "rb") as raw:
        f = gzip.GzipFile(fileobj=raw, mode="rb") if path.lower().endswith(".gz") else raw
        head = f.read(1 << 16)
    except READ_ERRORS as e:
      raise ValueError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
    if b"<PubmedArticleSet" in head or b"<MedlineCitationSet" in head:
      return "pubmed_xml"
    if b"<pmc-articleset" in head or b"<article" in head:
      return "pmc"
    raise ValueError(f"{path}: neither PubMed (<PubmedArticleSet>/<MedlineCitationSet>) "
                     "nor JATS (<article>) XML; pass --input_format")
  raise ValueError(f"{path}: unknown input type (expected .xml, .nxml, .txt or .jsonl, "
                   "optionally .gz); pass --input_format")


class DocumentStream:
  """Iterates the `TextDocument`s of one file; `bytes_read` tracks the raw position."""

  def __init__(self, path: str, input_format: str = "auto", stats: InputStats | None = None):
    if input_format not in FORMATS:
      raise ValueError(f"input_format must be one of {FORMATS}, got {input_format!r}")
    self.path = str(path)
    self.format = detect_format(self.path) if input_format == "auto" else input_format
    self.stats = stats if stats is not None else InputStats()
    self.size = fs.getsize(self.path)
    self._raw = None

  @property
  def bytes_read(self) -> int:
    raw = self._raw
    if raw is None:
      return 0
    try:
      return raw.tell()
    except (ValueError, OSError):  # closed: the file is done
      return self.size

  def __iter__(self) -> Iterator[TextDocument]:
    readers = {"pubmed_xml": self._pubmed, "pmc": self._pmc, "text": self._text,
               "jsonl": self._text, "bioc_xml": self._bioc, "bioc_json": self._bioc}
    with fs.open(self.path, "rb") as raw:
      self._raw = raw
      handle = gzip.GzipFile(fileobj=raw, mode="rb") if self.path.endswith(".gz") else raw
      with handle:
        yield from readers[self.format](handle)

  def _yield(self, doc: TextDocument) -> TextDocument:
    self.stats.documents += 1
    if not doc.text:
      self.stats.empty += 1
    return doc

  def _pubmed(self, handle) -> Iterator[TextDocument]:
    record, root, depth = 0, None, 0
    try:
      for event, element in ET.iterparse(handle, events=("start", "end")):
        if event == "start":
          root = element if root is None else root
          depth += 1
          continue
        depth -= 1
        if element.tag in ("MedlineCitation", "BookDocument"):
          record += 1
          pmid = element.findtext("PMID", default="").strip()
          if not pmid:
            self.stats.error(f"{self.path}: record {record} (<{element.tag}>): no PMID")
          else:
            if element.tag == "BookDocument":
              self.stats.book_articles += 1
            yield self._yield(dataclasses.replace(citation_document(element), doc_id=pmid))
          element.clear()
        elif element.tag == "DeleteCitation":
          for node in element.iter("PMID"):
            self.stats.deleted += 1
            if len(self.stats.deleted_ids) < 100_000:
              self.stats.deleted_ids.append((node.text or "").strip())
        elif depth == 1 and element.tag not in _PUBMED_RECORDS:
          skipped = self.stats.skipped_elements
          skipped[element.tag] = skipped.get(element.tag, 0) + 1
        if depth == 1:
          root.clear()
    except ET.ParseError as e:
      line, column = e.position
      self.stats.ended_early(f"{self.path}:{line}:{column}: malformed XML after record "
                             f"{record}, rest of the file lost ({e})")
    except READ_ERRORS as e:
      self.stats.ended_early(f"{self.path}: unreadable or truncated after record {record}, "
                             f"rest of the file lost ({type(e).__name__}: {e})")

  def _pmc(self, handle) -> Iterator[TextDocument]:
    record = 0
    try:
      for _, element in ET.iterparse(handle, events=("end",)):
        if element.tag != "article":
          continue
        record += 1
        doc_id, title, paragraphs = pmc.article_parts(element)
        element.clear()
        if not doc_id:
          self.stats.error(f"{self.path}: article {record}: no pmc/pmid <article-id>")
        else:
          yield self._yield(dataclasses.replace(join_segments(paragraphs, title),
                                                doc_id=doc_id))
    except ET.ParseError as e:
      line, column = e.position
      self.stats.ended_early(f"{self.path}:{line}:{column}: malformed XML after article "
                             f"{record}, rest of the file lost ({e})")
    except READ_ERRORS as e:
      self.stats.ended_early(f"{self.path}: unreadable or truncated after article {record}, "
                             f"rest of the file lost ({type(e).__name__}: {e})")

  def _bioc(self, handle) -> Iterator[TextDocument]:
    """Every document of a BioC collection (read whole: BioC files are per request or
    per article), passages at their offsets."""
    del handle
    try:
      collection = bioc_reader.read_collection(self.path)
    except ValueError as e:
      self.stats.error(str(e))
      return
    for number, document in enumerate(collection.documents, 1):
      if not document.id:
        self.stats.error(f"{self.path}: document {number}: no <id>")
        continue
      try:
        text, segments, title_end = bioc_reader.document_layout(document)
      except ValueError as e:
        self.stats.error(f"{self.path}: {e}")
        continue
      yield self._yield(TextDocument(str(document.id), text, title_end, segments,
                                     source=document))

  def _text(self, handle) -> Iterator[TextDocument]:
    """One document per non-empty line (text) or per JSON object with "text" (jsonl)."""
    name = os.path.basename(self.path)
    number = 0
    try:
      for number, raw_line in enumerate(handle, 1):
        try:
          line = raw_line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
          self.stats.error(f"{self.path}:{number}: invalid UTF-8 ({e.reason} at byte "
                           f"{e.start})")
          continue
        if not line.strip():
          continue
        doc_id, text = f"{name}:{number}", line
        if self.format == "jsonl":
          try:
            record = json.loads(line)
          except json.JSONDecodeError as e:
            self.stats.error(f"{self.path}:{number}: invalid JSON ({e.msg})")
            continue
          if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            self.stats.error(f"{self.path}:{number}: expected an object with a \"text\" "
                             "string")
            continue
          text = record["text"]
          doc_id = str(record.get("id", doc_id))
        segments = ((0, len(text)),) if text else ()
        yield self._yield(TextDocument(doc_id, text, 0, segments))
    except READ_ERRORS as e:
      self.stats.ended_early(f"{self.path}:{number + 1}: unreadable or truncated, rest of "
                             f"the file lost ({type(e).__name__}: {e})")


# The children of <PubmedArticleSet>/<MedlineCitationSet> that hold citations (read above
# at their inner <MedlineCitation>/<BookDocument>) or deletions; any other is counted.
_PUBMED_RECORDS = ("PubmedArticle", "PubmedBookArticle", "MedlineCitation", "DeleteCitation",
                   "BookDocument")


def citation_document(citation: ET.Element) -> TextDocument:
  """Title + abstract of one `<MedlineCitation>` or `<BookDocument>` (doc_id left empty).

  A book document's title is its ArticleTitle (a chapter), else its Book/BookTitle."""
  if citation.tag == "BookDocument":
    article = citation
    title = element_text(citation.find("ArticleTitle")) or element_text(
        citation.find("Book/BookTitle"))
  else:
    article = citation.find("Article")
    if article is None:
      return join_segments([])
    title = element_text(article.find("ArticleTitle")) or element_text(
        article.find("VernacularTitle"))
  sections = []
  for section in article.findall("Abstract/AbstractText"):
    text = element_text(section)
    label = section.get("Label", "").strip()
    if text:
      sections.append(f"{label}: {text}" if label else text)
  return join_segments(sections, title)


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def output_stem(path: str) -> str:
  """The output name stem of an input file: its base name without .gz and the type."""
  name = os.path.basename(path)
  for suffix in (".gz", ".xml", ".nxml", ".txt", ".jsonl", ".json"):
    name = name.removesuffix(suffix)
  return _SAFE_NAME.sub("_", name)
