"""Entities written as a BioC collection (XML or JSON), one document at a time.

A document read from BioC keeps its passages, infons and annotations, and gains ours; any
other document becomes passages from its segments (title / abstract or paragraphs) at
their offsets. Each entity is an annotation in the passage holding it: infons `type`,
`score` (mean word confidence, 4 decimals) and `annotator`, one location with the
document-level offset (BioC's convention), and its text, so that
`passage.text[offset - passage.offset:][:length] == text`.
"""
from __future__ import annotations

import datetime
import json
from typing import Any, TextIO
from collections.abc import Sequence

from data_pipeline.corpora.bioc_reader import _bioc

FORMATS = ("bioc-xml", "bioc-json")
ANNOTATOR = "biobert-jax"


def to_bioc(doc_id: str, text: str, segments: Sequence[tuple[int, int]], title_end: int,
            entities: Sequence[dict], source: Any = None) -> Any:
  """The BioCDocument of one annotated document (`source`: the BioCDocument read)."""
  bioc = _bioc()
  if source is not None:
    document = source
  else:
    document = bioc.BioCDocument()
    document.id = doc_id
    for k, (start, end) in enumerate(segments or ((0, len(text)),) if text else ()):
      passage = bioc.BioCPassage()
      passage.offset, passage.text = start, text[start:end]
      passage.infons["type"] = ("title" if k == 0 and title_end and end == title_end
                                else "abstract" if title_end else "paragraph")
      document.add_passage(passage)
  taken = {a.id for p in document.passages for a in p.annotations} | {
      a.id for a in document.annotations}
  number = 0
  for entity in entities:
    number += 1
    while f"{ANNOTATOR}-{number}" in taken:
      number += 1
    annotation = bioc.BioCAnnotation()
    annotation.id = f"{ANNOTATOR}-{number}"
    annotation.infons.update(type=entity["type"], score=f"{entity['score']:.4f}",
                             annotator=ANNOTATOR)
    annotation.text = entity["text"]
    annotation.add_location(bioc.BioCLocation(entity["start"],
                                              entity["end"] - entity["start"]))
    holder = next((p for p in document.passages if p.text is not None
                   and p.offset <= entity["start"] and entity["end"] <= p.offset + len(p.text)),
                  document)
    holder.add_annotation(annotation)
  return document


class BiocWriter:
  """Streams documents into one collection file: header, documents, `close()` footer."""

  def __init__(self, handle: TextIO, fmt: str, source: str = ANNOTATOR):
    if fmt not in FORMATS:
      raise ValueError(f"BioC format must be one of {FORMATS}, got {fmt!r}")
    _bioc()  # fail before writing anything when the package is missing
    self.handle, self.fmt, self.count = handle, fmt, 0
    date = datetime.date.today().isoformat()
    if fmt == "bioc-xml":
      handle.write("<?xml version='1.0' encoding='UTF-8'?>\n"
                   "<!DOCTYPE collection SYSTEM 'BioC.dtd'>\n<collection>"
                   f"<source>{source}</source><date>{date}</date><key>BioC.key</key>\n")
    else:
      handle.write(json.dumps({"source": source, "date": date, "key": "BioC.key",
                               "infons": {}})[:-1] + ', "documents": [\n')

  def write(self, document: Any) -> None:
    bioc = _bioc()
    if self.fmt == "bioc-xml":
      from bioc.biocxml import encoder as xml_encoder
      from lxml import etree
      self.handle.write(etree.tostring(xml_encoder.encode_document(document),
                                       encoding="unicode") + "\n")
    else:
      self.handle.write((",\n" if self.count else "")
                        + json.dumps(bioc.biocjson.toJSON(document), ensure_ascii=False))
    self.count += 1

  def close(self) -> None:
    self.handle.write("</collection>\n" if self.fmt == "bioc-xml" else "\n]}\n")
