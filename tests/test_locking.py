"""One writer per output: the directory lock, and the trainers and annotate taking it."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from biobert_jax import locking
from biobert_jax.trainers import workdir as workdir_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_HOLDER = """
import sys, time
from biobert_jax import locking
with locking.hold(sys.argv[1]):
  print("held", flush=True)
  time.sleep(float(sys.argv[2]))
"""


def _hold_in_child(directory, seconds=60.0) -> subprocess.Popen:
  child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(directory), str(seconds)],
                           stdout=subprocess.PIPE, text=True, cwd=REPO,
                           env=dict(os.environ, PYTHONPATH=REPO))
  assert child.stdout.readline().strip() == "held"
  return child


@pytest.fixture
def held_by_child(tmp_path):
  child = _hold_in_child(tmp_path / "run")
  yield tmp_path / "run", child
  child.kill()
  child.wait()


def test_second_holder_in_another_process_is_refused_naming_it(held_by_child):
  directory, child = held_by_child
  with pytest.raises(locking.LockHeld) as error:
    with locking.hold(directory):
      pass
  message = str(error.value)
  assert "\n" not in message
  assert f"pid {child.pid}" in message and socket.gethostname() in message
  assert str(directory) in message


def test_second_holder_in_the_same_process_is_refused(tmp_path):
  with locking.hold(tmp_path):
    with pytest.raises(locking.LockHeld, match="this process"):
      with locking.hold(tmp_path):
        pass
  with locking.hold(tmp_path):  # released: free again
    pass


def test_a_killed_holder_leaves_a_stale_lock_that_is_taken_over(tmp_path):
  child = _hold_in_child(tmp_path)
  child.send_signal(signal.SIGKILL)
  child.wait()
  assert locking.holder(tmp_path)["pid"] == child.pid  # the record survives the kill
  said = []
  with locking.hold(tmp_path, log=said.append):
    assert locking.holder(tmp_path)["pid"] == os.getpid()
  assert len(said) == 1 and f"stale lock of pid {child.pid}" in said[0]
  assert not (tmp_path / locking.LOCK_NAME).exists()  # a clean exit removes it


def test_record_alone_decides_without_flock(tmp_path, monkeypatch):
  """Where flock is unsupported: a dead pid on this host is stale, a live one holds."""
  def no_flock(fd, op):
    raise OSError(38, "Function not implemented")  # ENOSYS

  monkeypatch.setattr(locking.fcntl, "flock", no_flock)
  lock = tmp_path / locking.LOCK_NAME
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                              "started": "x"}))
  with locking.hold(tmp_path, log=lambda _: None):
    pass
  lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                              "started": "x"}))
  with pytest.raises(locking.LockHeld, match=f"pid {os.getppid()}"):
    with locking.hold(tmp_path):
      pass


def test_non_primary_processes_do_not_lock(held_by_child):
  directory, _ = held_by_child
  with locking.hold(directory, primary=False) as path:
    assert path is None


def test_overwrite_clear_keeps_the_lock(tmp_path):
  with locking.hold(tmp_path):
    (tmp_path / "old.txt").write_text("x")
    workdir_lib.clear(str(tmp_path))
    assert os.listdir(tmp_path) == [locking.LOCK_NAME]
  assert os.listdir(tmp_path) == []


def test_finetune_refuses_a_locked_workdir_before_writing(held_by_child, data_dir):
  from biobert_jax.trainers import finetune as finetune_lib
  from experiments.configs.finetune import get_config
  directory, child = held_by_child
  config = get_config("ner")
  config.data_dir = str(data_dir / "ner/NCBI-disease")
  config.init_checkpoint = ""
  config.model_preset = "tiny"
  config.vocab_path = str(data_dir / "vocab" / "bert-base-cased-vocab.txt")
  start = time.time()
  with pytest.raises(locking.LockHeld, match=f"pid {child.pid}"):
    finetune_lib.run(config, str(directory))
  assert time.time() - start < 5
  assert os.listdir(directory) == [locking.LOCK_NAME]


def test_pretrain_refuses_a_locked_workdir_before_writing(held_by_child, data_dir):
  from biobert_jax.trainers.pretrain import train
  from _pretrain_util import tiny_run_config
  directory, child = held_by_child
  with pytest.raises(locking.LockHeld, match=f"pid {child.pid}"):
    train(tiny_run_config(data_dir), str(directory))
  assert os.listdir(directory) == [locking.LOCK_NAME]


def test_finetune_main_exits_with_one_line(held_by_child, data_dir):
  directory, child = held_by_child
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.finetune",
       "--config=experiments/configs/finetune.py:ner",
       f"--config.data_dir={data_dir / 'ner/NCBI-disease'}", "--config.init_checkpoint=",
       "--config.model_preset=tiny",
       f"--config.vocab_path={data_dir / 'vocab' / 'bert-base-cased-vocab.txt'}",
       f"--workdir={directory}"],
      capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
      timeout=300)
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith("error: ") and f"pid {child.pid}" in lines[-1]
  assert "Traceback" not in proc.stderr
