"""Annotating at scale: every citation a record, offsets, skip on re-run, resume after a kill."""
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from biobert_jax.checkpoints.native import save_native
from biobert_jax.config import BertConfig
from biobert_jax.models import BertForTokenClassification, init_params
from biobert_jax.trainers import annotate, batched_predict
from data_pipeline import annotate_features, annotate_input
from data_pipeline.corpora.sentences import sentence_spans, split_sentences
from data_pipeline.tokenization import load_tokenizer, read_vocab

LABELS = ["O", "B-Disease", "I-Disease"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def medline_sample(data_dir):
  return data_dir / "pretrain" / "xml_sample" / "medline16n0902_sample.xml.gz"


@pytest.fixture(scope="module")
def model_dir(data_dir, tmp_path_factory):
  """A tiny random NER model dir (BERT cased vocab) that tags a fair share of words."""
  vocab_path = data_dir / "vocab" / "bert-base-cased-vocab.txt"
  config = BertConfig.preset("tiny", vocab_size=len(read_vocab(vocab_path)), hidden_size=32,
                             num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=64)
  params = init_params(BertForTokenClassification(config, num_labels=3), jax.random.key(0))
  params["classifier"]["bias"] = np.asarray([0.3, 0.0, 0.0], np.float32)
  out = tmp_path_factory.mktemp("annotate_model") / "model"
  save_native(config, params, out)
  shutil.copyfile(vocab_path, out / "vocab.txt")
  (out / "task.json").write_text(json.dumps({
      "task": "ner", "labels": LABELS, "max_seq_length": 64, "doc_stride": 32,
      "lowercase": False, "extra_tokens": []}))
  return out


def _run(model_dir, inputs, out, **kwargs):
  kwargs = {"batch_size": 64, "block_docs": 128, "log_every_s": 1e9, **kwargs}
  return annotate.annotate([str(model_dir)], str(inputs), str(out), **kwargs)


def _pmids(path):
  """The PMIDs of a MEDLINE file's <MedlineCitation>s, counted with a plain regex."""
  import re
  with gzip.open(path, "rt", encoding="utf-8") as f:
    text = f.read()
  return [m.group(1) for m in
          re.finditer(r"<MedlineCitation[^>]*>\s*<PMID[^>]*>(\d+)</PMID>", text)]


def _file_bytes(directory):
  return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()
          and p.name != "summary.json"}


@pytest.fixture(scope="module")
def medline_run(model_dir, data_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("annotated")
  summary = _run(model_dir, medline_sample(data_dir), out)
  return out, summary


def test_one_record_per_citation_with_valid_offsets(medline_run, data_dir):
  out, summary = medline_run
  assert jax.device_count() == 8 and summary["devices"] == 8
  records = [json.loads(line) for line in
             (out / "medline16n0902_sample.jsonl").read_text(encoding="utf-8").splitlines()]
  assert [r["id"] for r in records] == _pmids(medline_sample(data_dir))
  assert len(records) == 604 and summary["documents"] == 604
  assert summary["deleted_citations"] == 1 and summary["skipped_malformed"] == 0
  assert all(r["text"] for r in records)  # 78 have no abstract: their title is the text
  n_entities = 0
  for r in records:
    for e in r["entities"]:
      assert r["text"][e["start"]:e["end"]] == e["text"] and e["text"].strip() == e["text"]
      assert e["type"] == "Disease" and 0 < e["score"] <= 1
      n_entities += 1
    starts = [(e["start"], e["end"]) for e in r["entities"]]
    assert starts == sorted(starts)
  assert n_entities > 100 and summary["entities"] == {"Disease": n_entities}
  stats = json.loads((out / "_stats" / "medline16n0902_sample.jsonl.json").read_text())
  assert stats["deleted_ids"] and stats["documents"] == 604
  assert not list(out.glob("*.partial"))


def test_second_run_skips_and_changes_nothing(medline_run, model_dir, data_dir):
  out, first = medline_run
  before = _file_bytes(out)
  stamps = {p: os.stat(out / p).st_mtime_ns for p in before}
  summary = _run(model_dir, medline_sample(data_dir), out)
  assert summary["files_existing"] == 1 and summary["files_written"] == 0
  assert summary["documents_this_run"] == 0
  assert summary["documents"] == first["documents"]
  assert summary["entities"] == first["entities"]
  assert _file_bytes(out) == before
  assert {p: os.stat(out / p).st_mtime_ns for p in before} == stamps


def test_title_only_citation_and_malformed_record_are_accounted(tmp_path):
  xml = tmp_path / "tiny.xml"
  xml.write_text(
      "<MedlineCitationSet>"
      "<MedlineCitation><PMID>1</PMID><Article><ArticleTitle>Title one.</ArticleTitle>"
      "<Abstract><AbstractText Label=\"AIM\">First part. Second.</AbstractText>"
      "<AbstractText>Plain <i>section</i>.</AbstractText></Abstract></Article>"
      "</MedlineCitation>"
      "<MedlineCitation><Article><ArticleTitle>No id</ArticleTitle></Article>"
      "</MedlineCitation>"
      "<MedlineCitation><PMID>3</PMID><Article><ArticleTitle>Only a title"
      "</ArticleTitle></Article></MedlineCitation>"
      "<DeleteCitation><PMID>9</PMID><PMID>10</PMID></DeleteCitation>"
      "</MedlineCitationSet>", encoding="utf-8")
  stream = annotate_input.DocumentStream(str(xml))
  docs = list(stream)
  assert [d.doc_id for d in docs] == ["1", "3"]
  assert docs[0].text == "Title one. AIM: First part. Second. Plain section."
  assert docs[0].title_end == len("Title one.")
  assert [docs[0].text[a:b] for a, b in docs[0].segments] == [
      "Title one.", "AIM: First part. Second.", "Plain section."]
  assert docs[1].text == "Only a title" and docs[1].segments == ((0, 12),)
  assert stream.stats.malformed == 1 and "record 2" in stream.stats.errors[0]
  assert stream.stats.deleted_ids == ["9", "10"]
  block = annotate_features.split_block(docs)
  assert block.texts == ["Title one.", "AIM: First part.", "Second.", "Plain section.",
                         "Only a title"]


def test_truncated_gzip_keeps_read_documents(tmp_path, data_dir):
  data = medline_sample(data_dir).read_bytes()
  cut = tmp_path / "cut.xml.gz"
  cut.write_bytes(data[:len(data) // 2])
  stream = annotate_input.DocumentStream(str(cut))
  docs = list(stream)
  assert 100 < len(docs) < 604
  assert stream.stats.malformed == 1 and "cut.xml.gz" in stream.stats.errors[0]


def test_sentence_spans_match_split_sentences():
  text = "  We saw E. coli in 3.5 ml. The U.S. No other author (Fig. 2) agreed!  Yes.  "
  spans = sentence_spans(text)
  assert [text[a:b] for a, b in spans] == split_sentences(text)


def test_long_sentences_give_every_word_one_owner(data_dir):
  tokenizer = load_tokenizer(data_dir / "vocab" / "bert-base-cased-vocab.txt")
  table = annotate_features.continuation_table(tokenizer)
  text = " ".join(["Adenomatous polyposis coli (APC) is hereditary."] * 6)
  windows = annotate_features.make_windows(tokenizer, [text, "", "Short one."], 16, 6, table)
  assert len(windows.word_spans) == 3 and len(windows.word_spans[1]) == 0
  owned = np.concatenate([w for w, s in zip(windows.words, windows.sentence) if s == 0])
  assert sorted(owned.tolist()) == list(range(len(windows.word_spans[0])))
  assert max(len(ids) for ids in windows.ids) <= 16
  words = [text[a:b] for a, b in windows.word_spans[0]]
  assert words[:6] == ["Adenomatous", "polyposis", "coli", "(", "APC", ")"]
  features = annotate_features.window_features(windows, 16, tokenizer.pad_id)
  assert features["input_ids"].shape == (len(windows.ids), 16)
  for r, ids in enumerate(windows.ids):
    assert features["attention_mask"][r].sum() == len(ids)
    assert features["input_ids"][r, :len(ids)].tolist() == ids.tolist()
    assert set(features["input_ids"][r, len(ids):].tolist()) <= {tokenizer.pad_id}
  batches = batched_predict.batch_plan(features, 4, 8)
  seen = np.concatenate([rows for rows, _ in batches])
  assert sorted(seen.tolist()) == list(range(len(windows.ids)))
  assert all(len(rows) <= 4 and length % 8 == 0 for rows, length in batches)


def test_pubtator_offsets_count_title_space_abstract(model_dir, data_dir, tmp_path):
  sample = data_dir / "pretrain" / "xml_sample" / "pubmed26n1334_sample.xml.gz"
  _run(model_dir, sample, tmp_path / "json")
  _run(model_dir, sample, tmp_path / "pt", output_format="pubtator")
  records = [json.loads(line) for line in
             (tmp_path / "json" / "pubmed26n1334_sample.jsonl").read_text().splitlines()]
  blocks = (tmp_path / "pt" / "pubmed26n1334_sample.pubtator").read_text().split("\n\n")
  blocks = [b for b in blocks if b.strip()]
  assert len(blocks) == len(records) == 30
  for record, block in zip(records, blocks):
    lines = block.split("\n")
    title = lines[0].split("|t|", 1)[1]
    abstract = lines[1].split("|a|", 1)[1]
    assert lines[0].startswith(record["id"] + "|t|")
    full = title + " " + abstract if abstract else title
    assert full == record["text"]
    mentions = [line.split("\t") for line in lines[2:]]
    assert len(mentions) == len(record["entities"])
    for (pmid, start, end, text, etype, _), e in zip(mentions, record["entities"]):
      assert (pmid, int(start), int(end), text, etype) == (
          record["id"], e["start"], e["end"], e["text"], e["type"])


@pytest.mark.slow
def test_killed_run_resumes(model_dir, data_dir, tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  shutil.copyfile(data_dir / "pretrain" / "xml_sample" / "pubmed26n1334_sample.xml.gz",
                  inputs / "a.xml.gz")
  shutil.copyfile(medline_sample(data_dir), inputs / "b.xml.gz")
  args = dict(batch_size=64, block_docs=32)
  reference = tmp_path / "reference"
  _run(model_dir, inputs / "*.xml.gz", reference, **args)
  out = tmp_path / "out"
  command = [sys.executable, "-m", "experiments.annotate", f"--models={model_dir}",
             f"--input={inputs}/*.xml.gz", f"--output={out}", "--batch_size=64",
             "--block_docs=32"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while not (out / "a.jsonl").exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert (out / "a.jsonl").exists()
  assert not (out / "b.jsonl").exists()  # killed inside the second file
  first_done = (out / "a.jsonl").read_bytes()
  summary = _run(model_dir, inputs / "*.xml.gz", out, **args)
  assert summary["files"]["a.jsonl"]["status"] == "existing"
  assert (out / "a.jsonl").read_bytes() == first_done
  assert _file_bytes(out) == _file_bytes(reference)
  assert summary["documents"] == 634


_WITHOUT_TENSORFLOW = """
import importlib.machinery, runpy, sys
LACKING = ("tensorflow", "tensorflow_text", "tensorflow_datasets", "ml_collections")
class _Lacking(importlib.machinery.PathFinder):  # as if not installed: find_spec gives None
  @classmethod
  def find_spec(cls, name, path=None, target=None):
    if name.split(".")[0] in LACKING:
      return None
    return importlib.machinery.PathFinder.find_spec(name, path, target)
sys.meta_path[:] = [_Lacking if f is importlib.machinery.PathFinder else f
                    for f in sys.meta_path]
sys.argv = ["annotate", *sys.argv[1:]]
runpy.run_module("experiments.annotate", run_name="__main__")
"""


@pytest.mark.slow  # a subprocess: ~35 s
def test_annotate_runs_without_tensorflow_and_gives_the_same_output(
    medline_run, model_dir, data_dir, tmp_path):
  # The GPU image has no TensorFlow nor ml_collections (experiments/benchmarks/
  # device_check.sh), and annotation needs neither: same files, byte for byte.
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "-c", _WITHOUT_TENSORFLOW, f"--models={model_dir}",
       f"--input={medline_sample(data_dir)}", f"--output={out}", "--batch_size=64",
       "--block_docs=128"], cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _file_bytes(out) == _file_bytes(medline_run[0])
