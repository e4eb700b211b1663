"""Annotate finishes only what is whole: partial input, unreadable files, replaced inputs,
book articles, concurrent runs, flags, PubTator injection, planted links."""
import gzip
import json
import os
import subprocess
import sys

import pytest

from biobert_jax.trainers import annotate
from data_pipeline import annotate_input
from data_pipeline.corpora.pubmed_xml import read_pubmed_xml
from data_pipeline.corpora.records import ReadStats

from test_annotate import medline_sample, model_dir  # noqa: F401  # the tiny NER model fixture

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_BOOK_SET = """<?xml version="1.0"?>
<PubmedArticleSet>
<PubmedArticle><MedlineCitation><PMID>11</PMID><Article><ArticleTitle>Gene one.</ArticleTitle>
<Abstract><AbstractText>Cancer of the lung is common.</AbstractText></Abstract></Article>
</MedlineCitation></PubmedArticle>
<PubmedBookArticle><BookDocument><PMID>22</PMID><Book><BookTitle>A book</BookTitle></Book>
<ArticleTitle>Chapter two.</ArticleTitle><Abstract><AbstractText>Breast cancer was seen.
</AbstractText></Abstract></BookDocument><PubmedBookData/></PubmedBookArticle>
<SomethingNew><PMID>33</PMID></SomethingNew>
<DeleteCitation><PMID>44</PMID></DeleteCitation>
</PubmedArticleSet>
"""


def _run(model, inputs, out, **kwargs):
  kwargs = {"batch_size": 64, "block_docs": 128, "log_every_s": 1e9, **kwargs}
  return annotate.annotate([str(model)], str(inputs), str(out), **kwargs)


def _jsonl(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return path


def test_book_articles_are_annotated_and_unknown_elements_counted(tmp_path):
  path = tmp_path / "books.xml"
  path.write_text(_BOOK_SET)
  stream = annotate_input.DocumentStream(str(path))
  docs = list(stream)
  assert [d.doc_id for d in docs] == ["11", "22"]
  assert docs[1].text.startswith("Chapter two. Breast cancer")
  assert stream.stats.book_articles == 1
  assert stream.stats.skipped_elements == {"SomethingNew": 1}
  assert stream.stats.deleted == 1 and not stream.stats.incomplete
  # The pre-training reader reads the book's abstract too, and counts the unknown element.
  stats = ReadStats()
  assert [d.doc_id for d in read_pubmed_xml(path, stats=stats)] == ["11", "22"]
  assert stats.skipped_other == 1


def test_truncated_gzip_is_not_finished_and_is_redone(model_dir, tmp_path, data_dir):
  inputs = tmp_path / "in"
  inputs.mkdir()
  data = medline_sample(data_dir).read_bytes()
  (inputs / "cut.xml.gz").write_bytes(data[:len(data) // 2])
  _jsonl(inputs / "ok.jsonl", [{"id": "x", "text": "Lung cancer."}])
  out = tmp_path / "out"
  summary = _run(model_dir, inputs / "*", out)
  assert not (out / "cut.jsonl").exists()
  assert (out / "ok.jsonl").exists()
  report = summary["files"]["cut.jsonl"]
  assert report["status"] == "incomplete" and 100 < report["documents"] < 604
  assert "truncated" in summary["failed"]["cut.jsonl"]
  assert summary["documents"] == 1  # only what was written
  assert not list(out.glob("*.partial*"))
  (inputs / "cut.xml.gz").write_bytes(data)  # the whole file now
  summary = _run(model_dir, inputs / "*", out)
  assert summary["files"]["cut.jsonl"]["status"] == "written" and not summary["failed"]
  assert len((out / "cut.jsonl").read_text().splitlines()) == 604


def test_replaced_input_is_redone(model_dir, tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  source = _jsonl(inputs / "a.jsonl", [{"id": "1", "text": "First text."}])
  out = tmp_path / "out"
  _run(model_dir, source, out)
  _jsonl(source, [{"id": "1", "text": "First text."}, {"id": "2", "text": "Another one."}])
  summary = _run(model_dir, source, out)
  assert summary["files"]["a.jsonl"]["status"] == "written"
  assert [json.loads(l)["id"] for l in (out / "a.jsonl").read_text().splitlines()] == ["1", "2"]
  summary = _run(model_dir, source, out)  # unchanged now: kept
  assert summary["files"]["a.jsonl"]["status"] == "existing"


def test_unreadable_files_are_skipped_listed_and_the_run_goes_on(model_dir, tmp_path,
                                                                data_dir):
  inputs = tmp_path / "in"
  inputs.mkdir()
  xml = gzip.decompress(medline_sample(data_dir).read_bytes())
  (inputs / "a_plain.xml.gz").write_bytes(xml[:5000])             # not gzip at all
  (inputs / "b_utf16.xml").write_bytes(_BOOK_SET.replace(
      'version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16"))
  _jsonl(inputs / "c.jsonl", [{"id": "x", "text": "Lung cancer."}])
  out = tmp_path / "out"
  summary = _run(model_dir, inputs / "*", out)
  assert set(summary["failed"]) == {"a_plain.jsonl", "b_utf16.jsonl"}
  assert "a_plain.xml.gz" in summary["failed"]["a_plain.jsonl"]
  assert summary["files"]["c.jsonl"]["status"] == "written"
  written = json.loads((out / "summary.json").read_text())
  assert set(written["failed"]) == {"a_plain.jsonl", "b_utf16.jsonl"}


@pytest.mark.parametrize("flag,value", [("batch_size", -5), ("batch_size", 0),
                                        ("block_docs", 0), ("bucket_length", -1),
                                        ("input_format", "pdf"),
                                        ("log_every_s", 0.0)])
def test_bad_options_stop_before_any_model_loads(tmp_path, flag, value):
  source = _jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "x"}])
  # AnnotateOptionError (a ValueError); raised before the (missing) model is looked at
  with pytest.raises(ValueError, match=flag.replace("output_", "")) as error:
    _run(tmp_path / "no_such_model", source, tmp_path / "out", **{flag: value})
  assert "\n" not in str(error.value)
  assert not (tmp_path / "out").exists()


def test_a_second_run_on_one_output_is_refused(model_dir, tmp_path):
  from biobert_jax import locking
  source = _jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "x"}])
  out = tmp_path / "out"
  with locking.hold(out):
    with pytest.raises(locking.LockHeld, match=f"pid {os.getpid()}|this process"):
      _run(model_dir, source, out)
  assert not (out / "a.jsonl").exists()


def test_planted_links_are_refused_but_a_linked_output_dir_is_fine(model_dir, tmp_path):
  source = _jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "Lung cancer."}])
  victim = tmp_path / "victim.txt"
  victim.write_text("keep")
  out = tmp_path / "out"
  out.mkdir()
  (out / "a.jsonl").symlink_to(victim)
  with pytest.raises(ValueError, match="symbolic link"):
    _run(model_dir, source, out)
  os.remove(out / "a.jsonl")
  (out / "_stats").mkdir()
  (out / "_stats" / "a.jsonl.json").symlink_to(victim)
  with pytest.raises(ValueError, match="symbolic link"):
    _run(model_dir, source, out)
  assert victim.read_text() == "keep"
  real = tmp_path / "real"
  (tmp_path / "link").symlink_to(real, target_is_directory=False)
  real.mkdir()
  summary = _run(model_dir, source, tmp_path / "link")
  assert summary["files"]["a.jsonl"]["status"] == "written" and (real / "a.jsonl").exists()


def test_pubtator_ids_cannot_forge_lines_or_fields(model_dir, tmp_path):
  forged = "1|t|FORGED TITLE\n1|a|x\n1\t0\t5\tFORGED\tDisease\t-"
  source = _jsonl(tmp_path / "a.jsonl", [
      {"id": forged, "text": "Lung cancer\tand\nbreast cancer."},
      {"id": "2\t3", "text": "Another text."}])
  out = tmp_path / "out"
  _run(model_dir, source, out, output_format="pubtator")
  blocks = [b for b in (out / "a.pubtator").read_text().split("\n\n") if b.strip()]
  assert len(blocks) == 2
  for block in blocks:
    lines = block.splitlines()
    doc_id = lines[0].split("|")[0]
    assert "\t" not in doc_id
    assert lines[0].startswith(f"{doc_id}|t|") and lines[1].startswith(f"{doc_id}|a|")
    for line in lines[2:]:  # entity lines: exactly six fields, the document's own id
      fields = line.split("\t")
      assert fields[0] == doc_id and len(fields) == 6, line
  text = (out / "a.pubtator").read_text()
  assert sum("|t|" in line for line in text.splitlines()) == 2
  assert "FORGED\tDisease" not in text
  from biobert_jax.trainers.annotate_outputs import pubtator_id
  assert pubtator_id("12345") == "12345"
  assert blocks[1].startswith("2%093|t|")


@pytest.mark.slow  # a subprocess: ~30 s
def test_main_exits_nonzero_after_finishing_the_readable_files(model_dir, tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  (inputs / "a_plain.xml.gz").write_text("<PubmedArticleSet/>")
  _jsonl(inputs / "b.jsonl", [{"id": "x", "text": "Lung cancer."}])
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.annotate", f"--models={model_dir}",
       f"--input={inputs}/*", f"--output={out}", "--batch_size=8"],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 1
  assert (out / "b.jsonl").exists()
  assert proc.stderr.strip().splitlines()[-1].startswith("error: 1 file(s) not annotated")
  bad = subprocess.run(
      [sys.executable, "-m", "experiments.annotate", f"--models={model_dir}",
       f"--input={inputs}/*", f"--output={out}", "--batch_size=-5"],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert bad.returncode == 1 and "Traceback" not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1] == (
      "error: --batch_size must be a positive integer, got -5")
