"""Corpus readers on the real MEDLINE/PubMed/PMC samples and on malformed files."""
import gzip

import pytest

from data_pipeline.corpora import CorpusError, ReadStats, read_documents
from data_pipeline.corpora.pmc import read_pmc
from data_pipeline.corpora.pubmed_xml import read_pubmed_xml
from data_pipeline.corpora.text import read_bert_format, read_doc_per_line

MEDLINE_2016 = "pretrain/xml_sample/medline16n0902_sample.xml.gz"
PUBMED_2026 = "pretrain/xml_sample/pubmed26n1334_sample.xml.gz"
PMC_NXML = "pretrain/xml_sample/pmc_pone.0046493.nxml"

# Counts stated in the shared data README.
_CITATION = ('<MedlineCitation><PMID Version="1">{pmid}</PMID><Article>'
             '<ArticleTitle>Title {pmid}.</ArticleTitle>{abstract}</Article>'
             '</MedlineCitation>\n')
_ABSTRACT = ('<Abstract><AbstractText Label="BACKGROUND">First sentence of {pmid}. '
             'Second sentence.</AbstractText></Abstract>')


def _citation(pmid: str, with_abstract: bool = True) -> str:
  return _CITATION.format(pmid=pmid,
                          abstract=_ABSTRACT.format(pmid=pmid) if with_abstract else "")


def _medline_file(path, body: str) -> None:
  path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<MedlineCitationSet>\n' + body +
                  "</MedlineCitationSet>\n", encoding="utf-8")


def test_medline_2016_counts_and_structure(data_dir):
  stats = ReadStats()
  docs = list(read_pubmed_xml(data_dir / MEDLINE_2016, stats=stats))
  assert len(docs) == 526 and stats.documents == 526
  assert stats.skipped_no_text == 604 - 526
  assert stats.skipped_deleted == 1 and stats.skipped_errors == 0
  first = docs[0]
  assert first.doc_id == "17942999"
  assert first.sentences[0].startswith("Neuroplasticity in the processing of pitch")
  assert first.sentences[1].startswith("PURPOSE: An auditory electrophysiological study")
  assert any(s.startswith("CONCLUSIONS: The MMN can serve") for s in first.sentences)
  assert len({d.doc_id for d in docs}) == 526
  assert stats.sentences == sum(len(d.sentences) for d in docs)


def test_pubmed_2026_counts(data_dir):
  stats = ReadStats()
  docs = list(read_documents(data_dir / PUBMED_2026, "pubmed_xml", stats=stats))
  assert len(docs) == 27 and stats.skipped_no_text == 3
  assert docs[0].doc_id == "41576520"
  assert docs[0].sentences[0].startswith("The Relationship of Serum Uric Acid")
  assert docs[0].sentences[1].startswith("BACKGROUND: Pediatric chronic kidney disease")


def test_pmc_article(data_dir):
  stats = ReadStats()
  docs = list(read_pmc(data_dir / PMC_NXML, stats=stats))
  assert len(docs) == 1 and stats.documents == 1
  doc = docs[0]
  text = " ".join(doc.sentences)
  assert doc.doc_id == "PMC3460867"
  assert doc.sentences[0].startswith("MmPPOX Inhibits Mycobacterium tuberculosis Lipolytic")
  assert doc.sentences[1].startswith("Lipid metabolism plays an important role")  # abstract
  assert "Experiments involving cellular and animal infection models" in text  # body
  assert "Main acknowledgment goes to D. Maurin" not in text  # back matter
  assert "Brosch" not in text  # reference list
  assert "SDS-PAGE profile of the 9 Lip-HSL proteins" not in text  # figure caption
  assert len(doc.sentences) > 150


def test_text_formats(tmp_path):
  per_line = tmp_path / "docs.txt"
  per_line.write_text("First doc. It has two sentences.\n\nSecond doc here.\n")
  docs = list(read_doc_per_line(per_line))
  assert [d.sentences for d in docs] == [("First doc.", "It has two sentences."),
                                         ("Second doc here.",)]
  assert [d.doc_id for d in docs] == ["docs.txt:1", "docs.txt:3"]
  bert = tmp_path / "bert.txt"
  bert.write_text("Sentence one.\nSentence two.\n\n\nOther doc.\n")
  docs = list(read_bert_format(bert))
  assert [d.sentences for d in docs] == [("Sentence one.", "Sentence two."), ("Other doc.",)]
  assert docs[1].doc_id == "bert.txt:5"
  with pytest.raises(ValueError, match="file_format"):
    read_documents(bert, "csv")


def test_gzipped_text_is_read(tmp_path):
  path = tmp_path / "docs.txt.gz"
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write("A first one. And more.\nA second one.\n")
  assert len(list(read_doc_per_line(path))) == 2


def test_invalid_utf8_text(tmp_path):
  path = tmp_path / "bad.txt"
  path.write_bytes(b"Good doc one.\nBad \xff\xfe doc.\nGood doc three.\n")
  with pytest.raises(CorpusError, match=r"bad\.txt:2: invalid UTF-8"):
    list(read_doc_per_line(path, on_error="raise"))
  stats = ReadStats()
  docs = list(read_doc_per_line(path, on_error="skip", stats=stats))
  assert [d.doc_id for d in docs] == ["bad.txt:1", "bad.txt:3"]
  assert stats.skipped_errors == 1 and "bad.txt:2" in stats.errors[0]


def test_truncated_gzip(tmp_path, data_dir):
  data = (data_dir / PUBMED_2026).read_bytes()
  path = tmp_path / "truncated.xml.gz"
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(CorpusError, match="truncated.xml.gz"):
    list(read_pubmed_xml(path, on_error="raise"))
  stats = ReadStats()
  docs = list(read_pubmed_xml(path, on_error="skip", stats=stats))
  assert 0 < len(docs) < 27  # the records before the cut are kept
  assert stats.skipped_errors == 1 and "truncated.xml.gz" in stats.errors[0]


def test_broken_xml(tmp_path):
  path = tmp_path / "broken.xml"
  _medline_file(path, _citation("1") + "<MedlineCitation><PMID>2</PMID><Article>\n"
                "<ArticleTitle>Unclosed</Article></MedlineCitation>\n" + _citation("3"))
  with pytest.raises(CorpusError, match=r"broken\.xml:5:\d+: malformed XML after record 1"):
    list(read_pubmed_xml(path, on_error="raise"))
  stats = ReadStats()
  docs = list(read_pubmed_xml(path, on_error="skip", stats=stats))
  assert [d.doc_id for d in docs] == ["1"]
  assert stats.skipped_errors == 1


def test_invalid_utf8_xml(tmp_path):
  path = tmp_path / "bad_utf8.xml"
  good = _citation("1").encode()
  bad = _citation("2").replace("First", "Fi\udcffrst").encode("utf-8", "surrogateescape")
  path.write_bytes(b"<?xml version='1.0' encoding='UTF-8'?>\n<MedlineCitationSet>\n" + good +
                   bad + b"</MedlineCitationSet>\n")
  with pytest.raises(CorpusError, match=r"bad_utf8\.xml:4:"):
    list(read_pubmed_xml(path, on_error="raise"))
  stats = ReadStats()
  assert [d.doc_id for d in read_pubmed_xml(path, on_error="skip", stats=stats)] == ["1"]
  assert stats.skipped_errors == 1


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_record_without_abstract_is_a_counted_skip(tmp_path, on_error):
  path = tmp_path / "no_abstract.xml"
  _medline_file(path, _citation("1") + _citation("2", with_abstract=False) + _citation("3"))
  stats = ReadStats()
  docs = list(read_pubmed_xml(path, on_error=on_error, stats=stats))
  assert [d.doc_id for d in docs] == ["1", "3"]
  assert stats.skipped_no_text == 1 and stats.skipped_errors == 0
  assert docs[0].sentences == ("Title 1.", "BACKGROUND: First sentence of 1.",
                               "Second sentence.")


def test_record_without_pmid(tmp_path):
  path = tmp_path / "no_pmid.xml"
  _medline_file(path, _citation("1") + _citation("").replace("<PMID Version=\"1\"></PMID>", "")
                + _citation("3"))
  with pytest.raises(CorpusError, match=r"no_pmid\.xml: record 2 .*no PMID"):
    list(read_pubmed_xml(path, on_error="raise"))
  stats = ReadStats()
  docs = list(read_pubmed_xml(path, on_error="skip", stats=stats))
  assert [d.doc_id for d in docs] == ["1", "3"] and stats.skipped_errors == 1


def test_bad_policy_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="on_error"):
    list(read_doc_per_line(tmp_path / "x.txt", on_error="ignore"))


@pytest.mark.parametrize("reader", [read_pubmed_xml, read_pmc])
def test_xml_declaring_an_unknown_encoding_names_the_file(tmp_path, reader):
  # Found by the large fuzz budget: expat raised a bare LookupError for encoding="TTF-8".
  path = tmp_path / "bad.xml"
  path.write_bytes(b'<?xml version="1.0" encoding="TTF-8"?>\n<PubmedArticleSet/>\n')
  with pytest.raises(CorpusError, match=r"bad\.xml.*unknown encoding"):
    list(reader(path))
  stats = ReadStats()
  assert list(reader(path, on_error="skip", stats=stats)) == []
