"""BioC in and out for predict and annotate: recognised by content, offsets kept.

Inputs are built from real MEDLINE citations (title + abstract passages at PubTator's
offsets, with an annotation already present, as PubTator3 serves them), in BioC XML and
the JSON shapes in use (collection, PMC's list of collections, PubTator3's
{"PubTator3": [...]}, one document per line), under file names that say nothing.
Every annotation written is checked as passage text[start:end] == its text.
"""
import json

import bioc
from bioc import biocjson, biocxml
import pytest

from biobert_jax.trainers import annotate, bioc_output, predict
from data_pipeline import annotate_input
from data_pipeline.corpora import bioc_reader
from test_predict import _model_dir


@pytest.fixture(scope="module")
def citations(data_dir):
  source = data_dir / "pretrain" / "xml_sample" / "pubmed26n1334_sample.xml.gz"
  docs = [d for d in annotate_input.DocumentStream(str(source))
          if d.title_end and len(d.text) > d.title_end + 1][:3]
  assert len(docs) == 3
  return docs


def _collection(docs):
  collection = bioc.BioCCollection()
  collection.source, collection.date, collection.key = "PubTator", "2026-12-05", "BioC.key"
  for d in docs:
    document = bioc.BioCDocument()
    document.id = d.doc_id
    for k, (start, end) in enumerate(d.segments[:1] + ((d.title_end + 1, len(d.text)),)):
      passage = bioc.BioCPassage()
      passage.offset, passage.text = start, d.text[start:end]
      passage.infons["type"] = "title" if k == 0 else "abstract"
      document.add_passage(passage)
    gold = bioc.BioCAnnotation()  # an annotation already there (kept on output)
    gold.id, gold.text = "1", d.text[:4]
    gold.infons["type"] = "Gene"
    gold.add_location(bioc.BioCLocation(0, 4))
    document.passages[0].add_annotation(gold)
    collection.add_document(document)
  return collection


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, citations):
  d = tmp_path_factory.mktemp("bioc_in")
  collection = _collection(citations)
  obj = json.loads(biocjson.dumps(collection))
  files = {"xml": d / "a.txt", "json": d / "b.dat", "pmc_list": d / "c",
           "pubtator3": d / "d.data", "lines": d / "e.jsonl"}
  files["xml"].write_text(biocxml.dumps(collection))
  files["json"].write_text(json.dumps(obj))
  files["pmc_list"].write_text(json.dumps([obj]))
  docs = [{k: v for k, v in doc.items()} for doc in obj["documents"]]
  files["pubtator3"].write_text(json.dumps({"PubTator3": docs}))
  files["lines"].write_text("".join(json.dumps(doc) + "\n" for doc in docs))
  return files


@pytest.fixture(scope="module")
def model(tmp_path_factory, minilm_dir):
  return str(_model_dir(tmp_path_factory.mktemp("bioc_model"), minilm_dir, 1) / "model")


def test_bioc_recognised_by_content_with_offsets_kept(inputs, citations):
  for name, path in inputs.items():
    expected = "bioc_xml" if name == "xml" else "bioc_json"
    assert annotate_input.detect_format(str(path)) == expected, name
    docs = list(annotate_input.DocumentStream(str(path)))
    assert [d.doc_id for d in docs] == [c.doc_id for c in citations]
    for doc, cite in zip(docs, citations):
      assert doc.text == cite.text  # passages at their offsets = PubTator's layout
      assert doc.title_end == cite.title_end
      for passage in doc.source.passages:
        assert doc.text[passage.offset:passage.offset + len(passage.text)] == passage.text


def test_sniff_rejects_other_inputs():
  assert bioc_reader.sniff(b'{"id": "1", "text": "a"}\n') is None
  assert bioc_reader.sniff(b"<?xml version='1.0'?>\n<PubmedArticleSet>") is None
  assert bioc_reader.sniff(b"\xef\xbb\xbf<?xml version='1.0'?>\n<!DOCTYPE collection "
                           b"SYSTEM 'BioC.dtd'>\n<collection>") == "bioc_xml"


def _check_annotations(collection, jsonl_records):
  ours = 0
  for document, record in zip(collection.documents, jsonl_records):
    assert document.id == record["id"]
    found = []
    for passage in document.passages:
      for ann in passage.annotations:
        loc = ann.locations[0]
        assert passage.text[loc.offset - passage.offset:][:loc.length] == ann.text
        if ann.infons.get("annotator") == bioc_output.ANNOTATOR:
          found.append((ann.infons["type"], loc.offset, loc.offset + loc.length,
                        round(float(ann.infons["score"]), 4)))
      assert any(a.id == "1" and a.infons["type"] == "Gene" for a in passage.annotations) \
          or passage.infons["type"] != "title"
    assert found == [(e["type"], e["start"], e["end"], round(e["score"], 4))
                     for e in record["entities"]]
    ours += len(found)
  assert ours > 50


@pytest.mark.parametrize("fmt", ["bioc-xml", "bioc-json"])
def test_annotate_writes_bioc_from_bioc_and_pubmed(tmp_path, inputs, model, fmt, data_dir):
  reference = annotate.annotate([model], str(inputs["xml"]), str(tmp_path / "jsonl"),
                                log_every_s=1e9)
  assert reference["documents"] == 3
  records = [json.loads(l) for l in (tmp_path / "jsonl" / "a.jsonl").read_text().splitlines()]
  annotate.annotate([model], str(inputs["json"]), str(tmp_path / fmt), output_format=fmt,
                    log_every_s=1e9)
  out = tmp_path / fmt / (annotate_input.output_stem(str(inputs["json"]))
                          + annotate.OUTPUT_FORMATS[fmt])
  collection = bioc_reader.read_collection(str(out))
  _check_annotations(collection, records)
  # Round trip: the BioC output read again gives the same text and the same entities.
  again = annotate.annotate([model], str(out), str(tmp_path / "again"), log_every_s=1e9)
  assert again["entities_total"] == reference["entities_total"]
  # A PubMed XML input written as BioC: passages from title and abstract.
  source = data_dir / "pretrain" / "xml_sample" / "pubmed26n1334_sample.xml.gz"
  annotate.annotate([model], str(source), str(tmp_path / "pubmed"), output_format=fmt,
                    log_every_s=1e9)
  pubmed = bioc_reader.read_collection(
      str(tmp_path / "pubmed" / ("pubmed26n1334_sample" + annotate.OUTPUT_FORMATS[fmt])))
  assert len(pubmed.documents) == 30
  for document in pubmed.documents:
    for passage in document.passages:
      for ann in passage.annotations:
        loc = ann.locations[0]
        assert passage.text[loc.offset - passage.offset:][:loc.length] == ann.text


def test_predict_reads_bioc_and_writes_all_formats(tmp_path, inputs, model):
  jsonl = tmp_path / "out.jsonl"
  assert predict.predict_file("ner", model, str(inputs["pubtator3"]), str(jsonl)) == 3
  records = [json.loads(l) for l in jsonl.read_text().splitlines()]
  for record in records:
    for e in record["entities"]:
      assert record["text"][e["start"]:e["end"]] == e["text"]
  for fmt in ("bioc-xml", "bioc-json"):
    out = tmp_path / f"out.{fmt}"
    predict.predict_file("ner", model, str(inputs["lines"]), str(out), fmt)
    _check_annotations(bioc_reader.read_collection(str(out)), records)
  pubtator = tmp_path / "out.pubtator"
  predict.predict_file("ner", model, str(inputs["xml"]), str(pubtator), "pubtator")
  lines = pubtator.read_text().splitlines()
  assert lines[0].startswith(records[0]["id"] + "|t|")
  assert sum("\t" in l for l in lines) == sum(len(r["entities"]) for r in records)


def test_broken_bioc_is_one_clear_line(tmp_path):
  path = tmp_path / "broken"
  path.write_text('{"documents": [{"id": "1", "passages": [{"offset": 0, "text": 5')
  with pytest.raises(ValueError, match=r"broken"):
    bioc_reader.read_collection(str(path))
