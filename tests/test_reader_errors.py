"""Readers name file and line for invalid UTF-8 and broken JSONL; a UTF-8 BOM never reaches
a token. The readers are fuzzed in tests/test_fuzz_readers.py."""
from __future__ import annotations

import json
import pathlib

import pytest

from biobert_jax.trainers import predict
from data_pipeline.corpora import read_documents
from data_pipeline.errors import InputError
from data_pipeline.tasks import chemprot, ner, qa
from data_pipeline.tasks import re as re_reader

REPO = pathlib.Path(__file__).resolve().parent.parent
TESTDATA = REPO / "tests" / "testdata"
# ---- invalid UTF-8, every reader


def _bad_utf8(tmp_path, name: str, lines: list[bytes], bad_line: int) -> pathlib.Path:
  path = tmp_path / name
  data = list(lines)
  data[bad_line - 1] = data[bad_line - 1].replace(b"X", b"\xff\xfe")
  path.write_bytes(b"\n".join(data) + b"\n")
  return path


def _chemprot_with_bad_entities(tmp_path):
  source = TESTDATA / "re_chemprot_raw" / "chemprot_training"
  files = chemprot.split_files(tmp_path, "train")
  files["abstracts"].parent.mkdir(parents=True)
  for key, target in files.items():
    target.write_bytes(source.joinpath(target.name).read_bytes())
  raw = files["entities"].read_bytes().split(b"\n")
  raw[1] = raw[1] + b"\xff"
  files["entities"].write_bytes(b"\n".join(raw))
  return files["entities"], lambda _: chemprot.build_split(tmp_path, "train")


READ_BAD_UTF8 = {
    "ner": (lambda p: ner.read_conll(p), "ner.tsv",
            [b"the\tO", b"geneX\tB-Gene", b""], 2),
    "re": (re_reader.read_relation_tsv, "re.tsv", [b"a @GENE$ b\t1", b"cX @GENE$\t0"], 2),
    "squad": (qa.read_squad, "qa.json", [b'{"data": [', b'{"title": "X"}]}'], 2),
    "predict_jsonl": (predict.read_records, "in.jsonl", [b'{"text": "a"}', b'{"text": "X"}'],
                      2),
    "predict_text": (predict.read_records, "in.txt", [b"fine", b"broken X"], 2),
    "text_corpus": (lambda p: list(read_documents(p, "text_doc_per_line")), "c.txt",
                    [b"One. Two.", b"Three X."], 2),
    "bert_corpus": (lambda p: list(read_documents(p, "text_bert")), "b.txt",
                    [b"One.", b"", b"Three X."], 3),
    "pubmed_xml": (lambda p: list(read_documents(p, "pubmed_xml")), "p.xml",
                   [b"<PubmedArticleSet>", b"<PubmedArticle>X</PubmedArticle>",
                    b"</PubmedArticleSet>"], 2),
}


@pytest.mark.parametrize("reader", sorted(READ_BAD_UTF8) + ["chemprot"])
def test_invalid_utf8_names_file_and_line(tmp_path, reader):
  if reader == "chemprot":
    path, read = _chemprot_with_bad_entities(tmp_path)
    line = 2
  else:
    read, name, lines, line = READ_BAD_UTF8[reader]
    path = _bad_utf8(tmp_path, name, lines, line)
  with pytest.raises(InputError, match=rf"^{path}:{line}\b"):
    read(path)


def test_broken_jsonl_line_names_file_and_line(tmp_path):
  path = tmp_path / "in.jsonl"
  path.write_text('{"text": "ok"}\n\n{"text": "broken"\n')
  with pytest.raises(InputError, match=rf"^{path}:3: not valid JSON"):
    predict.read_records(str(path))


# ---- the BOM


def test_bom_never_reaches_a_token(tmp_path):
  bom = "\ufeff"
  (tmp_path / "n.tsv").write_text(bom + "Familial\tB-Disease\ncancer\tI-Disease\n")
  assert ner.read_conll(tmp_path / "n.tsv")[0][0].words == ["Familial", "cancer"]
  (tmp_path / "r.tsv").write_text(bom + "index\tsentence\tlabel\n1\ta @GENE$ b\t1\n")
  assert re_reader.read_relation_tsv(tmp_path / "r.tsv")[0].guid == "1"
  (tmp_path / "q.json").write_text(bom + json.dumps({"data": []}))
  assert qa.read_squad(tmp_path / "q.json") == []
  (tmp_path / "in.jsonl").write_text(bom + '{"text": "BRCA1"}\n')
  assert predict.read_records(str(tmp_path / "in.jsonl")) == [{"text": "BRCA1"}]
  (tmp_path / "in.txt").write_text(bom + "BRCA1 mutations\n")
  assert predict.read_records(str(tmp_path / "in.txt")) == [{"text": "BRCA1 mutations"}]
  (tmp_path / "c.txt").write_text(bom + "BRCA1 is a gene.\n")
  doc = next(read_documents(tmp_path / "c.txt", "text_doc_per_line"))
  assert doc.sentences == ("BRCA1 is a gene.",)


def test_lines_break_at_newline_only(tmp_path):
  """U+2028, U+0085 and form feeds inside a sentence are text, not line ends."""
  (tmp_path / "r.tsv").write_text("a\u2028b\x0c@GENE$\u0085c\t1\n", encoding="utf-8")
  rows = re_reader.read_relation_tsv(tmp_path / "r.tsv")
  assert [r.text for r in rows] == ["a\u2028b\x0c@GENE$\u0085c"]
