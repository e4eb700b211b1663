"""Fuzzing every input reader: records or an InputError naming the file, nothing else.

Three properties per reader (hypothesis):
* random bytes and mutated valid files (the fixtures in tests/testdata, small slices of
  the shared data when present) give records or `InputError` whose message names the
  file; never another exception type, and each example within the deadline;
* round trip: records written in the reader's format are read back unchanged.

The default budget is small (FAST examples per property, seeded, for `make test`);
`test_fuzz_large_budget` (slow) reruns every property with SLOW random examples.
"""
from __future__ import annotations

import functools
import gzip
import json
import os
import pathlib
import string
import tempfile
import xml.sax.saxutils as saxutils

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biobert_jax.trainers import predict
from data_pipeline import paths
from data_pipeline.corpora import read_documents, split_sentences
from data_pipeline.errors import InputError
from data_pipeline.tasks import chemprot, ner, qa
from data_pipeline.tasks import re as re_reader

TESTDATA = pathlib.Path(__file__).parent / "testdata"
FAST = 30
SLOW = 400
DEADLINE_MS = 5000


def _settings(max_examples: int, derandomize: bool):
  return settings(max_examples=max_examples, deadline=DEADLINE_MS, derandomize=derandomize,
                  database=None, suppress_health_check=list(HealthCheck))


# ---------------------------------------------------------------- the readers under test


def _read_ner(scheme):
  return lambda path: ner.read_conll(path, scheme=scheme)[0]


def _read_corpus(fmt):
  return lambda path: list(read_documents(path, fmt, on_error="raise"))


def _read_chemprot(path):
  """The ChemProt train split of the release that `path` (one of its files) is part of."""
  return chemprot.build_split(pathlib.Path(path).parent.parent, "train")


READERS = {
    "ner_iob2": _read_ner("iob2"), "ner_iob1": _read_ner("iob1"),
    "ner_iobes": _read_ner("iobes"),
    "re_tsv": re_reader.read_relation_tsv,
    "chemprot_abstracts": _read_chemprot, "chemprot_entities": _read_chemprot,
    "chemprot_gold": _read_chemprot,
    "squad_json": qa.read_squad,
    "pubmed_xml": _read_corpus("pubmed_xml"), "pmc": _read_corpus("pmc"),
    "text_doc_per_line": _read_corpus("text_doc_per_line"),
    "text_bert": _read_corpus("text_bert"),
    "predict_jsonl": predict.read_records,
}
SUFFIX = {"squad_json": ".json", "pubmed_xml": ".xml", "pmc": ".nxml",
          "predict_jsonl": ".jsonl"}


def _shared_slice(*parts: str, size: int = 6000) -> bytes | None:
  path = paths.data_dir().joinpath(*parts)
  if not path.exists():
    return None
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as f:
    return f.read(size)


def _seeds(name: str) -> list[bytes]:
  """Valid (or nearly valid) inputs that the mutations start from."""
  if name.startswith("ner"):
    seeds = [(TESTDATA / "ner_iobes.tsv").read_bytes(),
             _shared_slice("ner", "NCBI-disease", "devel.tsv")]
  elif name == "re_tsv":
    seeds = [(TESTDATA / f).read_bytes() for f in ("re_two_columns.tsv",
                                                   "re_three_columns.tsv")]
  elif name.startswith("chemprot"):
    which = name.split("_")[1]
    file = chemprot.split_files(TESTDATA / "re_chemprot_raw", "train")[which]
    seeds = [file.read_bytes()]
  elif name == "squad_json":
    seeds = [(TESTDATA / "qa_tiny_squad.json").read_bytes()]
  elif name == "pubmed_xml":
    seeds = [_pubmed_xml([("1", "A title.", ["First part. Second one.", "More."])]),
             _shared_slice("pretrain", "xml_sample", "pubmed26n1334_sample.xml.gz")]
  elif name == "pmc":
    seeds = [_pmc_xml("11", "A title", ["Abstract one. Two."], ["Body text here."]),
             _shared_slice("pretrain", "xml_sample", "pmc_pone.0046493.nxml")]
  elif name.startswith("text"):
    seeds = [(TESTDATA / "pt_sentences.txt").read_bytes()[:3000],
             _shared_slice("pretrain", "pubmed_abstracts.txt", size=3000)]
  else:
    seeds = [b'{"text": "BRCA1 causes cancer."}\n{"id": 2, "text": "x"}\n']
  return [s for s in seeds if s]


def _check_outcome(name: str, path: pathlib.Path, named: pathlib.Path) -> None:
  """Reads `path`: records, or an InputError naming `named`. Anything else fails."""
  try:
    READERS[name](path)
  except InputError as e:
    assert str(named) in str(e), f"{name}: InputError does not name {named}: {e}"


def _with_file(name: str, data: bytes) -> None:
  with tempfile.TemporaryDirectory() as tmp:
    if name.startswith("chemprot"):
      # The fuzzed file inside a copy of the fixture release; an error may name any of
      # its three files (a broken abstract shows as an entity without abstract).
      files = chemprot.split_files(tmp, "train")
      files["abstracts"].parent.mkdir(parents=True)
      for key, target in files.items():
        target.write_bytes(data if key == name.split("_")[1] else
                           (TESTDATA / "re_chemprot_raw" / "chemprot_training" /
                            target.name).read_bytes())
      path, named = files[name.split("_")[1]], files["abstracts"].parent
    else:
      path = named = pathlib.Path(tmp) / f"input{SUFFIX.get(name, '.tsv')}"
      path.write_bytes(data)
    _check_outcome(name, path, named)


# ---------------------------------------------------------------- mutations

_MUTATION = st.tuples(st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate",
                                       "bad_utf8", "bom"]),
                      st.integers(0, 1 << 20), st.integers(0, 255), st.integers(1, 64))


def _mutate(data: bytes, mutations) -> bytes:
  buf = bytearray(data)
  for op, position, byte, length in mutations:
    at = position % (len(buf) + 1)
    if op == "flip" and buf:
      buf[at % len(buf)] ^= 1 << (byte % 8)
    elif op == "delete":
      del buf[at:at + length]
    elif op == "insert":
      buf[at:at] = bytes([byte]) * length
    elif op == "duplicate":
      buf[at:at] = buf[at:at + length]
    elif op == "truncate":
      del buf[at:]
    elif op == "bad_utf8":
      buf[at:at] = b"\xff\xc3"
    elif op == "bom":
      buf[0:0] = b"\xef\xbb\xbf"
  return bytes(buf)


def _random_bytes_property(name):
  def prop(data):
    _with_file(name, data)
  return given(st.binary(max_size=1500) | st.text(max_size=500).map(str.encode))(prop)


def _mutation_property(name):
  seeds = _seeds(name)

  def prop(seed_index, mutations):
    _with_file(name, _mutate(seeds[seed_index % len(seeds)], mutations))
  return given(st.integers(0, 10), st.lists(_MUTATION, min_size=1, max_size=6))(prop)


# ---------------------------------------------------------------- round trips

# Text without the characters each format reserves (line ends, tabs) and without a BOM
# (a BOM opening a file is dropped by policy).
_FREE_TEXT = st.text(st.characters(blacklist_categories=("Cs",),
                                   blacklist_characters="\t\n\r\ufeff"), min_size=1,
                     max_size=20)
_WORD = _FREE_TEXT.filter(lambda w: w.strip() == w and w != "-DOCSTART-")
_TYPES = st.sampled_from(["Disease", "Chemical", "Gene_or_protein", "X"])


@st.composite
def _iob2_sentences(draw):
  sentences = []
  for _ in range(draw(st.integers(1, 4))):
    words, tags, prev_type = [], [], None
    for _ in range(draw(st.integers(1, 8))):
      words.append(draw(_WORD))
      move = draw(st.sampled_from(["O", "B", "I"]))
      if move == "B" or (move == "I" and prev_type is None):
        prev_type = draw(_TYPES)
        tags.append(f"B-{prev_type}")
      elif move == "I":
        tags.append(f"I-{prev_type}")
      else:
        prev_type = None
        tags.append("O")
    sentences.append((words, tags))
  return sentences


def _to_scheme(tags: list[str], scheme: str) -> list[str]:
  out = []
  for k, tag in enumerate(tags):
    nxt = tags[k + 1] if k + 1 < len(tags) else "O"
    prev = tags[k - 1] if k else "O"
    prefix, _, kind = tag.partition("-")
    continues = nxt == f"I-{kind}"
    if tag == "O":
      out.append(tag)
    elif scheme == "iobes":
      out.append(f"{'B' if continues else 'S'}-{kind}" if prefix == "B"
                 else f"{'I' if continues else 'E'}-{kind}")
    elif scheme == "iob1" and prefix == "B":
      follows_same = prev in (f"B-{kind}", f"I-{kind}")
      out.append(tag if follows_same else f"I-{kind}")
    else:
      out.append(tag)
  return out


def _ner_round_trip(scheme):
  def prop(sentences):
    with tempfile.TemporaryDirectory() as tmp:
      path = pathlib.Path(tmp) / "in.tsv"
      path.write_text("\n\n".join(
          "\n".join(f"{w}\t{t}" for w, t in zip(words, _to_scheme(tags, scheme)))
          for words, tags in sentences) + "\n", encoding="utf-8")
      read = ner.read_conll(path, scheme=scheme, invalid_i="fail")[0]
    assert [(s.words, s.tags) for s in read] == sentences
  return given(_iob2_sentences())(prop)


_RE_TEXT = _FREE_TEXT.filter(lambda t: t.strip() == t)
_RE_LABEL = st.sampled_from(["0", "1", "false", "CPR:3"])


def _re_round_trip():
  def prop(rows, header):
    with tempfile.TemporaryDirectory() as tmp:
      path = pathlib.Path(tmp) / "train.tsv"
      lines = (["index\tsentence\tlabel"] + [f"r{i}\t{t}\t{l}" for i, (t, l) in
                                               enumerate(rows)]
               if header else [f"{t}\t{l}" for t, l in rows])
      path.write_text("\n".join(lines) + "\n", encoding="utf-8")
      read = re_reader.read_relation_tsv(path)
    assert [(e.text, e.label) for e in read] == rows
    assert [e.guid for e in read] == ([f"r{i}" for i in range(len(rows))] if header else
                                      [f"train-{i + 1}" for i in range(len(rows))])
  return given(st.lists(st.tuples(_RE_TEXT, _RE_LABEL), min_size=1, max_size=8),
               st.booleans())(prop)


@st.composite
def _squad_examples(draw):
  examples = []
  for i in range(draw(st.integers(1, 4))):
    context = draw(st.text(min_size=1, max_size=60))
    answers = []
    for _ in range(draw(st.integers(0, 2))):
      start = draw(st.integers(0, len(context) - 1))
      end = draw(st.integers(start + 1, len(context)))
      if context[start:end].strip():  # a blank answer is an error (tested by fuzzing)
        answers.append((context[start:end], start))
    examples.append(qa.QAExample(f"{i:024x}_{i:03d}", draw(st.text(max_size=30)), context,
                                 tuple(answers)))
  return examples


def _squad_round_trip():
  def prop(examples):
    data = {"data": [{"paragraphs": [
        {"context": e.context, "qas": [{"id": e.qas_id, "question": e.question, "answers": [
            {"text": t, "answer_start": s} for t, s in e.answers]}]} for e in examples]}]}
    with tempfile.TemporaryDirectory() as tmp:
      path = pathlib.Path(tmp) / "in.json"
      path.write_text(json.dumps(data), encoding="utf-8")
      assert qa.read_squad(path) == examples
  return given(_squad_examples())(prop)


# Corpus text: words of letters and digits, single spaces, sentence punctuation; the
# readers collapse whitespace and split sentences, so the expectation does the same.
_CORPUS_WORD = st.text(string.ascii_letters + string.digits + "αβµ", min_size=1, max_size=8)
_CORPUS_SENTENCE = st.lists(_CORPUS_WORD, min_size=1, max_size=6).map(
    lambda words: " ".join(words) + ".")
_CORPUS_PARAGRAPH = st.lists(_CORPUS_SENTENCE, min_size=1, max_size=3).map(" ".join)


def _pubmed_xml(citations) -> bytes:
  parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>']
  for pmid, title, sections in citations:
    texts = "".join(f"<AbstractText>{saxutils.escape(s)}</AbstractText>" for s in sections)
    parts.append(f"<PubmedArticle><MedlineCitation><PMID>{pmid}</PMID><Article>"
                 f"<ArticleTitle>{saxutils.escape(title)}</ArticleTitle>"
                 f"<Abstract>{texts}</Abstract></Article></MedlineCitation></PubmedArticle>")
  return ("\n".join(parts) + "\n</PubmedArticleSet>\n").encode()


def _pmc_xml(pmc_id, title, abstract, body) -> bytes:
  ps = lambda texts: "".join(f"<p>{saxutils.escape(t)}</p>" for t in texts)  # noqa: E731
  return (f'<?xml version="1.0"?>\n<article><front><article-meta>'
          f'<article-id pub-id-type="pmc">{pmc_id}</article-id><title-group><article-title>'
          f'{saxutils.escape(title)}</article-title></title-group><abstract>{ps(abstract)}'
          f'</abstract></article-meta></front><body><sec>{ps(body)}</sec></body>'
          f'</article>\n').encode()


def _pubmed_round_trip():
  def prop(citations):
    citations = [(str(i + 1), title, sections) for i, (title, sections) in
                 enumerate(citations)]
    with tempfile.TemporaryDirectory() as tmp:
      path = pathlib.Path(tmp) / "in.xml"
      path.write_bytes(_pubmed_xml(citations))
      docs = _read_corpus("pubmed_xml")(path)
    assert [(d.doc_id, list(d.sentences)) for d in docs] == [
        (pmid, [title] + [s for section in sections for s in split_sentences(section)])
        for pmid, title, sections in citations]
  return given(st.lists(st.tuples(_CORPUS_SENTENCE, st.lists(_CORPUS_PARAGRAPH, min_size=1,
                                                             max_size=3)),
                        min_size=1, max_size=4))(prop)


def _pmc_round_trip():
  def prop(title, abstract, body):
    with tempfile.TemporaryDirectory() as tmp:
      path = pathlib.Path(tmp) / "in.nxml"
      path.write_bytes(_pmc_xml("123", title, abstract, body))
      docs = _read_corpus("pmc")(path)
    expected = [title] + [s for p in abstract + body for s in split_sentences(p)]
    assert [(d.doc_id, list(d.sentences)) for d in docs] == [("PMC123", expected)]
  return given(_CORPUS_SENTENCE, st.lists(_CORPUS_PARAGRAPH, min_size=1, max_size=2),
               st.lists(_CORPUS_PARAGRAPH, max_size=3))(prop)


def _text_round_trip():
  def prop(documents, bom):
    with tempfile.TemporaryDirectory() as tmp:
      per_line = pathlib.Path(tmp) / "lines.txt"
      per_line.write_bytes((b"\xef\xbb\xbf" if bom else b"") +
                           "\n".join(" ".join(d) for d in documents).encode() + b"\n")
      bert = pathlib.Path(tmp) / "bert.txt"
      bert.write_text("\n\n".join("\n".join(d) for d in documents) + "\n", encoding="utf-8")
      lines_docs = _read_corpus("text_doc_per_line")(per_line)
      bert_docs = _read_corpus("text_bert")(bert)
    assert [list(d.sentences) for d in lines_docs] == [
        split_sentences(" ".join(d)) for d in documents]
    assert [d.doc_id for d in lines_docs] == [f"lines.txt:{i + 1}"
                                              for i in range(len(documents))]
    assert [list(d.sentences) for d in bert_docs] == documents
  return given(st.lists(st.lists(_CORPUS_SENTENCE, min_size=1, max_size=4), min_size=1,
                        max_size=5), st.booleans())(prop)


def _chemprot_round_trip():
  """Abstracts and entities written in the raw release's format read back unchanged."""
  def prop(documents):
    with tempfile.TemporaryDirectory() as tmp:
      root = pathlib.Path(tmp)
      (root / "abstracts.tsv").write_text("".join(
          f"{pmid}\t{title}\t{abstract}\n" for pmid, title, abstract in documents),
          encoding="utf-8")
      texts = {pmid: f"{title} {abstract}" for pmid, title, abstract in documents}
      mentions = [(pmid, f"T{k}", "CHEMICAL", 0, len(title), title)
                  for k, (pmid, title, _) in enumerate(documents)]
      (root / "entities.tsv").write_text("".join(
          f"{p}\t{t}\t{e}\t{s}\t{n}\t{x}\n" for p, t, e, s, n, x in mentions),
          encoding="utf-8")
      assert chemprot.read_documents(root / "abstracts.tsv") == texts
      read = chemprot.read_mentions(root / "entities.tsv", texts)
    assert [(p, m.id, m.type, m.start, m.end, m.text) for p, ms in read.items()
            for m in ms] == mentions
  pmids = st.integers(1, 10**8).map(str)
  return given(st.lists(st.tuples(pmids, _RE_TEXT, _RE_TEXT), min_size=1, max_size=5,
                        unique_by=lambda d: d[0]))(prop)


def _predict_round_trip():
  def prop(records):
    with tempfile.TemporaryDirectory() as tmp:
      path = pathlib.Path(tmp) / "in.jsonl"
      path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                      encoding="utf-8")
      assert predict.read_records(str(path)) == records
  return given(st.lists(st.fixed_dictionaries({"text": st.text(max_size=40)},
                                              optional={"id": st.integers()}),
                        max_size=5))(prop)


# Factories: hypothesis takes one settings object per wrapped test, so every budget gets
# freshly wrapped properties.
ROUND_TRIPS = {
    "ner_iob2": lambda: _ner_round_trip("iob2"), "ner_iob1": lambda: _ner_round_trip("iob1"),
    "ner_iobes": lambda: _ner_round_trip("iobes"), "re_tsv": _re_round_trip,
    "chemprot": _chemprot_round_trip, "squad_json": _squad_round_trip,
    "pubmed_xml": _pubmed_round_trip, "pmc": _pmc_round_trip,
    "text": _text_round_trip, "predict_jsonl": _predict_round_trip,
}
RANDOM = {name: functools.partial(_random_bytes_property, name) for name in READERS}
MUTATED = {name: functools.partial(_mutation_property, name) for name in READERS}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_bytes_give_records_or_input_error(name):
  _settings(FAST, derandomize=True)(RANDOM[name]())()


@pytest.mark.parametrize("name", sorted(MUTATED))
def test_mutated_files_give_records_or_input_error(name):
  _settings(FAST, derandomize=True)(MUTATED[name]())()


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_round_trip(name):
  _settings(FAST, derandomize=True)(ROUND_TRIPS[name]())()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["random", "mutated", "round_trip"])
def test_fuzz_large_budget(kind):
  """Every property again with SLOW (env BIOBERT_FUZZ_EXAMPLES) examples.

  Derandomised by default, so CI sees the same examples on every run (a random budget
  would make a red CI depend on luck); BIOBERT_FUZZ_RANDOM=1 explores new ones, and any
  bug it finds becomes a named regression test (e.g. the unknown XML encoding in
  test_corpora.py).
  """
  examples = int(os.environ.get("BIOBERT_FUZZ_EXAMPLES", SLOW))
  explore = os.environ.get("BIOBERT_FUZZ_RANDOM", "") == "1"
  properties = {"random": RANDOM, "mutated": MUTATED, "round_trip": ROUND_TRIPS}[kind]
  for make in properties.values():
    _settings(examples, derandomize=not explore)(make())()
