"""The whole loop on gs:// paths, against a Cloud Storage emulator on 127.0.0.1.

Tiny pre-training from a gs:// corpus and vocab into a gs:// workdir (orbax checkpoints,
metrics.jsonl, TensorBoard events, export), a SIGKILL and an exact resume, fine-tuning
from the gs:// export on gs:// NER data into a gs:// workdir, predict from and to gs://,
and annotate from gs:// MEDLINE XML to gs:// JSONL, whose re-run skips the finished file.
Nothing may connect outside 127.0.0.1 (tests/gcs_guard, checked by the fixture), and
nothing named `gs:` may appear on the local disk.
"""
import json
import os
import re
import signal

import jax
import numpy as np
import pytest

from biobert_jax import fs
from biobert_jax.train.metrics_writer import read_jsonl

from _pretrain_util import REPO, params_of, run_launcher, start_launcher, write_corpus

pytestmark = pytest.mark.slow

TOTAL = 8
RUN = {"total_steps": TOTAL, "checkpoint_every": 2, "data_source": "corpus",
       "tensorboard": True, "data.holdout_every": 0, "data.shuffle_buffer": 64,
       "data.doc_pool_size": 64}


def _upload(local, remote):
  fs.copy(str(local), remote)
  return remote


@pytest.fixture(scope="module")
def inputs(gcs_emulator, data_dir, tmp_path_factory):
  import _gcs
  bucket = _gcs.make_bucket("biobert-e2e")
  local = write_corpus(data_dir, tmp_path_factory.mktemp("corpus"), 200, 2)
  for part in ("part-0.txt", "part-1.txt"):
    _upload(local / part, f"{bucket}/corpus/{part}")
  _upload(data_dir / "vocab" / "bert-base-cased-vocab.txt", f"{bucket}/vocab.txt")
  for name in ("train.tsv", "devel.tsv", "test.tsv"):
    _upload(data_dir / "ner" / "NCBI-disease" / name, f"{bucket}/ner/{name}")
  _upload(data_dir / "pretrain" / "xml_sample" / "medline16n0902_sample.xml.gz",
          f"{bucket}/xml/medline16n0902_sample.xml.gz")
  return bucket


def _launcher(data_dir, inputs, workdir, cache_dir, *, kill_at=None):
  """The launcher (a child process) on gs:// paths: the gs:// vocab flag comes after the
  local default of launcher_args, and the last value of a flag wins."""
  overrides = dict(RUN, train_files=f"{inputs}/corpus/part-*.txt",
                   vocab_path=f"{inputs}/vocab.txt")
  if kill_at is None:
    return run_launcher(data_dir, workdir, cache_dir=cache_dir, **overrides)
  proc = start_launcher(data_dir, workdir, cache_dir=cache_dir, **overrides)
  lines = []
  for line in proc.stdout:
    lines.append(line)
    m = re.match(r"step (\d+)/", line)
    if m and int(m.group(1)) >= kill_at:
      proc.send_signal(signal.SIGKILL)
      break
  rest, _ = proc.communicate(timeout=300)
  assert proc.returncode == -signal.SIGKILL, ("".join(lines) + rest)[-3000:]
  return "".join(lines) + rest


@pytest.fixture(scope="module")
def pretrained(inputs, data_dir, tmp_path_factory):
  cache_dir = tmp_path_factory.mktemp("jax_cache")
  reference = f"{inputs}/pretrain_reference"
  _launcher(data_dir, inputs, reference, cache_dir)
  workdir = f"{inputs}/pretrain"
  _launcher(data_dir, inputs, workdir, cache_dir, kill_at=5)
  out = _launcher(data_dir, inputs, workdir, cache_dir)
  return reference, workdir, out


def test_pretraining_on_gs_resumes_exactly_after_a_kill(pretrained):
  reference, workdir, out = pretrained
  first = int(re.search(r"step (\d+)/", out).group(1))
  assert first > 1, out[-2000:]  # resumed from a gs:// checkpoint, did not start over
  rows, ref_rows = (read_jsonl(fs.join(w, "metrics.jsonl")) for w in (workdir, reference))
  assert [r["step"] for r in rows] == list(range(1, TOTAL + 1))
  for a, b in zip(rows, ref_rows):
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-6), a["step"]
  for a, b in zip(jax.tree.leaves(params_of(fs.join(workdir, "export"))),
                  jax.tree.leaves(params_of(fs.join(reference, "export")))):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
  names = fs.listdir(workdir)
  for expected in ("config.json", "bert_config.json", "vocab.txt", "checkpoints", "export",
                   "metrics.jsonl", "tensorboard"):
    assert expected in names, names
  assert not [n for n in names if n.endswith(fs.TMP_SUFFIX)], names
  assert fs.finished(fs.join(workdir, "export"))
  assert any("events.out.tfevents" in f for f in fs.walk_files(fs.join(workdir, "tensorboard")))
  assert not os.path.exists(os.path.join(REPO, "gs:"))


@pytest.fixture(scope="module")
def finetuned(pretrained, inputs):
  from biobert_jax.trainers.recipe_steps import finetune_config
  from biobert_jax.trainers import finetune
  _, export_workdir, _ = pretrained
  config = finetune_config(
      "ner", init_checkpoint=fs.join(export_workdir, "export"), vocab_path="",
      data_dir=f"{inputs}/ner", lowercase=0, batch_size=4, eval_batch_size=4,
      max_train_examples=8, max_eval_examples=4, max_seq_length=32, doc_stride=16,
      num_epochs=1, log_every=1,
      checkpoint_every=1, save_model=True, write_predictions=True, tensorboard=True,
      **{"mesh.data": 1, "optim.learning_rate": 1e-3, "optim.warmup_proportion": 0.0})
  workdir = f"{inputs}/finetune"
  results = finetune.run(config, workdir, devices=jax.devices()[:1])
  return workdir, results


def test_finetuning_from_a_gs_export_into_a_gs_workdir(finetuned):
  workdir, results = finetuned
  names = fs.listdir(workdir)
  for expected in ("config.json", "eval_results.json", "model", "metrics.jsonl",
                   "checkpoints", "predictions_test.txt" if "predictions_test.txt" in names
                   else "eval_results.json"):
    assert expected in names, names
  assert json.loads(fs.read_text(fs.join(workdir, "eval_results.json")))["test"] == results["test"]
  assert fs.finished(fs.join(workdir, "model"))
  assert not [n for n in names if n.endswith(fs.TMP_SUFFIX) or n.startswith("_")], names


def test_predict_reads_and_writes_gs(finetuned, inputs):
  from biobert_jax.trainers import predict
  workdir, _ = finetuned
  fs.write_text(f"{inputs}/predict/in.txt",
                "BRCA1 mutations cause breast cancer.\nAPC is a colorectal cancer gene.\n")
  n = predict.predict_file("ner", workdir, f"{inputs}/predict/in.txt",
                           f"{inputs}/predict/out.jsonl")
  lines = fs.read_text(f"{inputs}/predict/out.jsonl").splitlines()
  assert n == 2 and len(lines) == 2 and all("entities" in json.loads(x) for x in lines)


def test_annotate_gs_xml_to_gs_jsonl_and_rerun_skips(finetuned, inputs, tmp_path):
  from biobert_jax.trainers import annotate
  workdir, _ = finetuned
  model = fs.join(workdir, "model")
  out = f"{inputs}/annotated"
  kwargs = {"batch_size": 32, "block_docs": 64, "log_every_s": 1e9}
  # A half-written output of a killed run is never taken for a finished one.
  fs.write_text(f"{out}/medline16n0902_sample.jsonl.partial", '{"cut": ')
  first = annotate.annotate([model], f"{inputs}/xml/*.xml.gz", out, **kwargs)
  assert first["files_written"] == 1 and first["documents"] > 0
  jsonl = fs.read_text(f"{out}/medline16n0902_sample.jsonl")
  assert len(jsonl.splitlines()) == first["documents"]
  assert not fs.exists(f"{out}/medline16n0902_sample.jsonl.partial")
  second = annotate.annotate([model], f"{inputs}/xml/*.xml.gz", out, **kwargs)
  assert second["files_written"] == 0 and second["files_existing"] == 1
  assert fs.read_text(f"{out}/medline16n0902_sample.jsonl") == jsonl
  # The same model and input on local paths give the same bytes.
  local_model = tmp_path / "model"
  fs.copytree(model, str(local_model))
  local_xml = tmp_path / "medline16n0902_sample.xml.gz"
  fs.copy(f"{inputs}/xml/medline16n0902_sample.xml.gz", str(local_xml))
  annotate.annotate([str(local_model)], str(local_xml), str(tmp_path / "out"), **kwargs)
  assert (tmp_path / "out" / "medline16n0902_sample.jsonl").read_text() == jsonl
