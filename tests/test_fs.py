"""biobert_jax.fs against a Cloud Storage emulator on 127.0.0.1: the same answers as for
local paths, one-line errors naming the URL and operation, bounded retries of 429/503."""
import json
import os
import pathlib
import socket
import subprocess
import time

import pytest

import _gcs
from biobert_jax import fs, locking


def test_local_and_gs_paths_answer_alike(bucket, tmp_path):
  for root in (str(tmp_path / "r"), bucket + "/r"):
    fs.makedirs(fs.join(root, "sub"))
    fs.write_text(fs.join(root, "sub", "a.txt"), "alpha\n")
    fs.write_bytes(fs.join(root, "b.bin"), b"\x00\x01")
    fs.append_text(fs.join(root, "log.jsonl"), "1\n")
    fs.append_text(fs.join(root, "log.jsonl"), "2\n")
    assert fs.read_text(fs.join(root, "log.jsonl")) == "1\n2\n"
    assert fs.listdir(root) == ["b.bin", "log.jsonl", "sub"] or sorted(fs.listdir(root)) == [
        "b.bin", "log.jsonl", "sub"]
    assert fs.glob(fs.join(root, "*", "*.txt")) == [fs.join(root, "sub", "a.txt")]
    assert fs.isdir(fs.join(root, "sub")) and fs.isfile(fs.join(root, "b.bin"))
    assert fs.getsize(fs.join(root, "b.bin")) == 2
    assert fs.walk_files(root) == ["b.bin", "log.jsonl", "sub/a.txt"]
    with fs.open(fs.join(root, "sub", "a.txt")) as f:
      assert f.read() == "alpha\n"
    fs.remove(fs.join(root, "sub"))
    assert not fs.exists(fs.join(root, "sub", "a.txt"))
  assert fs.abspath(bucket + "/x") == bucket + "/x"
  assert fs.path(bucket + "/x/y.txt").name == "y.txt"


def test_commit_is_never_mistaken_for_finished_midway(bucket):
  final, tmp = bucket + "/model", bucket + "/model" + fs.TMP_SUFFIX
  fs.write_text(tmp + "/task.json", "{}")
  fs.write_text(tmp + "/params/x", "1")
  # A commit killed after copying one object: final exists but its stage is still there.
  fs.copy(tmp + "/task.json", final + "/task.json")
  assert fs.exists(final) and not fs.finished(final)
  fs.discard_unfinished(final)  # what a re-run does before staging again
  assert not fs.exists(final) and not fs.exists(tmp)
  fs.write_text(tmp + "/task.json", "{}")
  fs.write_text(tmp + "/params/x", "1")
  fs.commit(tmp, final)
  assert fs.finished(final) and fs.walk_files(final) == ["params/x", "task.json"]
  # Object names are prefixes of each other: removing `model` leaves `model.tmp*` alone.
  fs.write_text(tmp + "/a", "2")
  fs.write_text(final + "x", "3")
  fs.remove(final)
  assert not fs.exists(final)
  assert fs.exists(tmp + "/a") and fs.exists(final + "x")


def test_missing_bucket_object_and_denied_are_one_line(gcs_emulator, bucket):
  with pytest.raises(FileNotFoundError) as e:
    fs.read_text(bucket + "/nope.txt")
  msg = str(e.value)
  assert msg.startswith(f"read {bucket}/nope.txt: not found") and "\n" not in msg
  with pytest.raises(FileNotFoundError) as e:
    fs.read_text("gs://no-such-bucket-xyz/a.txt")
  assert str(e.value).startswith("read gs://no-such-bucket-xyz/a.txt: not found")
  with pytest.raises(FileNotFoundError) as e:
    fs.listdir("gs://no-such-bucket-xyz/dir")
  assert str(e.value).startswith("list gs://no-such-bucket-xyz/dir: not found")
  fs.write_text(bucket + "/secret.txt", "x")
  proxy = _gcs.FaultProxy(gcs_emulator, 403, times=100)
  try:
    os.environ["STORAGE_EMULATOR_HOST"] = proxy.url
    with pytest.raises(PermissionError) as e:
      fs.read_text(bucket + "/secret.txt")
    assert str(e.value).startswith(f"read {bucket}/secret.txt: permission denied")
    assert "\n" not in str(e.value)
  finally:
    os.environ["STORAGE_EMULATOR_HOST"] = gcs_emulator
    proxy.close()


def test_transient_503_and_429_are_retried_then_reported(gcs_emulator, bucket):
  fs.write_text(bucket + "/a.txt", "payload")
  proxy = _gcs.FaultProxy(gcs_emulator, 503, times=2)
  try:
    os.environ["STORAGE_EMULATOR_HOST"] = proxy.url
    assert fs.read_text(bucket + "/a.txt") == "payload"
    assert proxy.injected == 2  # both faults were seen and retried past
    proxy.status, proxy.remaining = 429, 1
    fs.write_text(bucket + "/b.txt", "again")
    assert proxy.injected == 3
  finally:
    os.environ["STORAGE_EMULATOR_HOST"] = gcs_emulator
    proxy.close()


@pytest.mark.slow
def test_a_lasting_503_is_reported_after_bounded_retries(gcs_emulator, bucket):
  fs.write_text(bucket + "/a.txt", "payload")
  proxy = _gcs.FaultProxy(gcs_emulator, 503, times=10**6)
  try:
    os.environ["STORAGE_EMULATOR_HOST"] = proxy.url
    start = time.time()
    with pytest.raises(OSError) as e:
      fs.read_text(bucket + "/a.txt")
    assert str(e.value).startswith(f"stat {bucket}/a.txt") or str(e.value).startswith(
        f"read {bucket}/a.txt")
    assert "503" in str(e.value) and "\n" not in str(e.value)
    # gcsfs: 6 tries of each request (backoff 1, 2, 4, 8, 16 s), then the error; a missing
    # object's stat makes two requests (the object, then a listing).
    assert 6 <= proxy.injected <= 12, proxy.injected
    assert time.time() - start < 150
  finally:
    os.environ["STORAGE_EMULATOR_HOST"] = gcs_emulator
    proxy.close()


def test_a_gs_data_dir_stays_a_url(monkeypatch):
  from data_pipeline import paths
  monkeypatch.setenv("BIOBERT_DATA_DIR", "gs://bucket/data")
  assert str(paths.data_path("ner", "NCBI-disease")) == "gs://bucket/data/ner/NCBI-disease"
  monkeypatch.setenv("BIOBERT_DATA_DIR", "rel/data")
  assert paths.data_dir() == (pathlib.Path.cwd() / "rel" / "data")


def test_create_new_and_version_on_both_kinds_of_path(bucket, tmp_path):
  for root in (str(tmp_path), bucket):
    path = fs.join(root, "once")
    assert fs.create_new(path, b"first") and not fs.create_new(path, b"second")
    assert fs.read_bytes(path) == b"first"
    before = fs.version(path)
    time.sleep(0.01)
    fs.write_bytes(path, b"third")
    assert fs.version(path) != before


def test_a_gs_workdir_is_locked_by_an_object(bucket):
  workdir = bucket + "/run"
  with locking.hold(workdir) as lock:
    assert lock == workdir + "/" + locking.LOCK_NAME and fs.exists(lock)
    assert locking.holder(workdir)["pid"] == os.getpid()
    with pytest.raises(locking.LockHeld, match="in use by this process"):
      with locking.hold(workdir):
        pass
  assert not fs.exists(workdir + "/" + locking.LOCK_NAME)
  # A record left by a run on another host holds; one of a dead pid here is taken over.
  record = {"pid": 1, "host": "elsewhere", "started": "2026-01-01T00:00:00+00:00"}
  fs.write_text(workdir + "/" + locking.LOCK_NAME, json.dumps(record))
  with pytest.raises(locking.LockHeld, match="pid 1 on host elsewhere"):
    with locking.hold(workdir):
      pass
  dead = subprocess.Popen(["true"])
  dead.wait()
  record.update(pid=dead.pid, host=socket.gethostname())
  fs.write_text(workdir + "/" + locking.LOCK_NAME, json.dumps(record))
  said = []
  with locking.hold(workdir, log=said.append):
    assert locking.holder(workdir)["pid"] == os.getpid()
  assert said and "taking over a stale lock" in said[0]


def test_hf_and_tf1_checkpoints_convert_to_and_from_gs_bit_exact(bucket, tmp_path):
  import jax
  import numpy as np

  from biobert_jax import BertConfig, checkpoints, models
  config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=32)
  params = models.init_params(models.BertForPreTraining(config), jax.random.key(0))
  checkpoints.export_hf(config, params, bucket + "/hf")
  assert checkpoints.detect_format(bucket + "/hf") == "hf" and fs.finished(bucket + "/hf")
  checkpoints.convert_checkpoint(bucket + "/hf", bucket + "/tf1", "tf1")
  assert checkpoints.detect_format(bucket + "/tf1") == "tf1"
  checkpoints.convert_checkpoint(bucket + "/tf1", str(tmp_path / "native"), "native")
  config2, params2, report = checkpoints.load_with_report(str(tmp_path / "native"))
  assert config2 == config and sorted(params2) == ["cls", "encoder"]
  jax.tree.map(np.testing.assert_array_equal, params2, params)
  assert checkpoints.load_with_report(bucket + "/hf")[2].path == bucket + "/hf"
