"""BioC input and BioC / PubTator output for `predict_file` (NER).

A BioC collection (recognised by content) is tagged passage by passage: each passage is
one text for the tagger, and its entities come back with document-level offsets (BioC's
convention), so an entity never crosses a passage. Output: `jsonl` (one record per
document: id, text with passages at their offsets, entities), `pubtator`, or `bioc-xml` /
`bioc-json` (the input documents with our annotations added, or new documents built
from the records).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TextIO

from biobert_jax.trainers import bioc_output
from data_pipeline import annotate_input
from data_pipeline.corpora import bioc_reader

OUTPUT_FORMATS = ("jsonl", "pubtator") + bioc_output.FORMATS


def is_bioc(path: str) -> bool:
  """By content; an unreadable file is left to the text reader's error message."""
  try:
    return bioc_reader.sniff(bioc_reader.read_head(path)) is not None
  except (OSError, EOFError):
    return False


def predict_bioc(path: str, tag_records: Callable[[list[dict]], list[dict]]) -> list[dict]:
  """Records {"id", "text", "entities", "_doc"} of every document of a BioC file."""
  collection = bioc_reader.read_collection(path)
  docs, passages = [], []
  for number, document in enumerate(collection.documents, 1):
    try:
      text, spans, title_end = bioc_reader.document_layout(document)
    except ValueError as e:
      raise ValueError(f"{path}: document {number}: {e}") from None
    docs.append(annotate_input.TextDocument(str(document.id), text, title_end, spans,
                                            source=document))
    passages += [(len(docs) - 1, start, text[start:end]) for start, end in spans]
  tagged = tag_records([{"text": t} for _, _, t in passages])
  entities: list[list[dict]] = [[] for _ in docs]
  for (d, start, _), record in zip(passages, tagged):
    for e in record["entities"]:
      entities[d].append({**e, "start": e["start"] + start, "end": e["end"] + start})
  return [{"id": doc.doc_id, "text": doc.text, "entities": found, "_doc": doc}
          for doc, found in zip(docs, entities)]


def _document(record: dict, number: int) -> annotate_input.TextDocument:
  if "_doc" in record:
    return record["_doc"]
  text = record["text"]
  return annotate_input.TextDocument(str(record.get("id", number)), text, 0,
                                     ((0, len(text)),) if text else ())


def write_records(records: Sequence[dict], f: TextIO, output_format: str) -> None:
  """Writes `records` to the open text file `f` in `output_format`."""
  if output_format not in OUTPUT_FORMATS:
    raise ValueError(f"output format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
  from biobert_jax.trainers.annotate import format_document
  writer = (bioc_output.BiocWriter(f, output_format)
            if output_format in bioc_output.FORMATS else None)
  for number, record in enumerate(records, 1):
    if output_format == "jsonl":
      f.write(json.dumps({k: v for k, v in record.items() if k != "_doc"},
                         ensure_ascii=False) + "\n")
      continue
    doc = _document(record, number)
    if writer is not None:
      writer.write(bioc_output.to_bioc(doc.doc_id, doc.text, doc.segments, doc.title_end,
                                       record.get("entities", []), doc.source))
    else:
      f.write(format_document(doc, record.get("entities", []), "pubtator"))
  if writer is not None:
    writer.close()


