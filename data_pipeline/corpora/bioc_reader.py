"""BioC collections (XML and JSON) as documents with text and passage spans.

BioC is what NCBI's tools exchange: PubTator3 and the PMC BioC API serve it. Parsing is
the `bioc` package's (bioc==2.1 from PyPI: maintained by the BioC authors' group, reads and
writes both serialisations and PubTator, pure Python on lxml); here only recognising a
file by its content and laying passages out at their offsets.

JSON comes in several shapes: a collection object, a list of collections (PMC BioC API),
{"PubTator3": [documents]} (PubTator3's export), or one document per line; keys BioC
makes optional (sentences, relations, infons, ...) are filled before parsing.

A document's text places every passage's text at its BioC offset (gaps filled with
spaces), so offsets into the text ARE BioC offsets; passages are the segments sentence
splitting never crosses.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import re
from typing import IO, TYPE_CHECKING, Any
from collections.abc import Iterator

from biobert_jax import fs

if TYPE_CHECKING:
  import bioc


def _bioc():
  """The `bioc` package, imported when BioC is actually read (the accelerator image runs
  annotate without it)."""
  try:
    import bioc.biocjson
    import bioc.biocxml
  except ImportError as e:
    raise ImportError("reading or writing BioC needs the bioc package: "
                      "pip install 'bioc>=2.1,<3'") from e
  return bioc


_XML_ROOT = re.compile(rb"^\s*(<\?xml[^>]*\?>\s*)?(<!--.*?-->\s*)*(<!DOCTYPE[^>]*>\s*)?"
                       rb"(<!--.*?-->\s*)*<collection[\s>]", re.S)
_JSON_START = re.compile(rb"^\s*[\[{]")


def sniff(head: bytes) -> str | None:
  """"bioc_xml" / "bioc_json" from the first bytes of a (decompressed) file, else None."""
  head = head.removeprefix(b"\xef\xbb\xbf")
  if _XML_ROOT.match(head):
    return "bioc_xml"
  if _JSON_START.match(head) and b'"passages"' in head:
    return "bioc_json"
  return None


@contextlib.contextmanager
def _open(path: str) -> Iterator[IO[bytes]]:
  with fs.open(path, "rb") as raw:  # local or gs://
    if str(path).endswith(".gz"):
      with gzip.open(raw, "rb") as f:
        yield f
    else:
      yield raw


def read_head(path: str, size: int = 1 << 16) -> bytes:
  with _open(path) as f:
    return f.read(size)


def _fill(obj: dict, keys: dict[str, Any]) -> dict:
  for key, default in keys.items():
    obj.setdefault(key, default() if callable(default) else default)
  return obj


def _complete_document(doc: dict) -> dict:
  for passage in doc.get("passages", []):
    for item in passage.get("annotations", []) + passage.get("sentences", []):
      _fill(item, {"infons": dict, "annotations": list, "relations": list, "locations": list,
                   "text": "", "id": ""})
    _fill(passage, {"infons": dict, "sentences": list, "annotations": list,
                    "relations": list, "offset": 0})
  for item in doc.get("annotations", []):
    _fill(item, {"infons": dict, "locations": list, "text": "", "id": ""})
  doc["id"] = str(doc.get("id", doc.get("_id", "")))
  return _fill(doc, {"infons": dict, "passages": list, "relations": list})


def _collection_from_json(obj: Any) -> bioc.BioCCollection:
  if isinstance(obj, list):  # PMC BioC API: [collection, ...]
    if obj and all(isinstance(o, dict) and "documents" in o for o in obj):
      docs = [d for o in obj for d in o["documents"]]
      obj = {**obj[0], "documents": docs}
    else:
      obj = {"documents": obj}
  elif isinstance(obj, dict) and "documents" not in obj:
    docs = next((v for v in obj.values() if isinstance(v, list)), None)  # {"PubTator3": [..]}
    obj = {"documents": docs if docs is not None else [obj]}
  obj = _fill(dict(obj), {"source": "", "date": "", "key": "", "infons": dict})
  obj["documents"] = [_complete_document(d) for d in obj["documents"]]
  return _bioc().biocjson.decoder.parse_collection(obj)


def read_collection(path: str) -> bioc.BioCCollection:
  """The whole collection of a BioC XML or JSON file (optionally .gz).

  Raises:
    ValueError: `path: ...` when the file is neither, or is broken.
  """
  kind = sniff(read_head(path))
  bioc = _bioc()
  with _open(path) as f:
    data = f.read()
  try:
    if kind == "bioc_xml":
      return bioc.biocxml.loads(data.decode("utf-8"))
    if kind == "bioc_json":
      text = data.decode("utf-8-sig")
      try:
        return _collection_from_json(json.loads(text))
      except json.JSONDecodeError:  # one document per line
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        return _collection_from_json(docs)
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise ValueError(f"{path}: broken BioC {kind.split('_')[1].upper()} "
                     f"({type(e).__name__}: {e})") from e
  except Exception as e:  # lxml's XMLSyntaxError
    raise ValueError(f"{path}: broken BioC XML ({type(e).__name__}: {e})") from e
  raise ValueError(f"{path}: not a BioC collection (no <collection> root, no JSON "
                   "documents with \"passages\")")


def passage_text(passage: Any) -> tuple[str, int]:
  """(text, offset) of a passage; a passage holding only sentences is laid out from them."""
  if passage.text is not None and passage.text != "":
    return passage.text, int(passage.offset)
  text, start = "", int(passage.offset)
  for sentence in sorted(passage.sentences, key=lambda s: s.offset):
    gap = int(sentence.offset) - start - len(text)
    text += " " * max(gap, 0) + (sentence.text or "")
  return text, start


def document_layout(document: Any) -> tuple[str, tuple[tuple[int, int], ...], int]:
  """(text, passage spans, title length) with every passage at its BioC offset.

  Raises:
    ValueError: passages that overlap (their offsets cannot all hold).
  """
  text, spans, title_end = "", [], 0
  for passage in sorted(document.passages, key=lambda p: p.offset):
    ptext, offset = passage_text(passage)
    if not ptext:
      continue
    if offset < len(text):
      raise ValueError(f"document {document.id}: passage at offset {offset} overlaps the "
                       f"previous one (ending at {len(text)})")
    text += " " * (offset - len(text)) + ptext
    spans.append((offset, offset + len(ptext)))
    if len(spans) == 1 and str(passage.infons.get("type", "")).lower() in ("title", "front"):
      title_end = len(ptext)
  return text, tuple(spans), title_end
