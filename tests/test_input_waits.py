"""Input that never comes: an empty corpus is an error, not a spin; SIGTERM ends a wait on
input and saves the delivered steps."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import jax.numpy as jnp
import numpy as np
import pytest

from biobert_jax.checkpoints.manager import CheckpointManager
from biobert_jax.train import loop
from biobert_jax.train.metrics_writer import MetricsWriter
from biobert_jax.trainers import pretrain_data
from data_pipeline import pretraining
from data_pipeline.errors import InputError
from data_pipeline.pretraining.static_writer import write_static_examples

REPO = pathlib.Path(__file__).resolve().parent.parent
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "gene", "cancer", "a", "b",
         "##s", "."]


@pytest.fixture()
def vocab(tmp_path) -> pathlib.Path:
  path = tmp_path / "vocab.txt"
  path.write_text("\n".join(VOCAB) + "\n")
  return path


def _run_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
  """Runs `code` in a fresh interpreter; the timeout only guards against a hang."""
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


# ---- no hang on empty input


def test_corpus_without_documents_is_an_error_not_a_hang(tmp_path, vocab):
  """Empty text, a PMC file without abstract/body, an empty TFRecord shard, a host
  without documents: each one line naming the files, where all of them used to spin."""
  (tmp_path / "empty.txt").write_text("")
  (tmp_path / "nobody.nxml").write_text(
      '<article><front><article-meta><article-id pub-id-type="pmc">7</article-id>'
      '<title-group><article-title>Only a title</article-title></title-group>'
      '</article-meta></front></article>')
  (tmp_path / "empty.tfrecord").write_bytes(b"")
  (tmp_path / "one.txt").write_text("the gene.\n")
  result = _run_python(f"""
      from data_pipeline import pretraining
      from data_pipeline.errors import InputError
      from data_pipeline.pretraining.static_writer import write_static_examples
      cases = [("empty.txt", "text_doc_per_line", 0, 1), ("nobody.nxml", "pmc", 0, 1),
               ("empty.tfrecord", "tfrecord", 0, 1), ("one.txt", "text_doc_per_line", 1, 2)]
      for name, fmt, index, count in cases:
        config = pretraining.default_config()
        config.update(train_files="{tmp_path}/" + name, file_format=fmt,
                      vocab_path="{vocab}", batch_size=2, holdout_every=0)
        try:
          next(pretraining.make_iterator(config, index, count))
          print("NO ERROR", name)
        except InputError as e:
          print("ERROR", e)
      config = pretraining.default_config()
      config.update(train_files="{tmp_path}/empty.txt", vocab_path="{vocab}", dupe_factor=1)
      try:
        write_static_examples(config, "{tmp_path}/out-{{shard}}.tfrecord", 2)
        print("NO ERROR static")
      except InputError as e:
        print("ERROR", e)
      """)
  lines = [l for l in result.stdout.splitlines() if l.startswith(("ERROR", "NO ERROR"))]
  assert result.returncode == 0, result.stderr[-3000:]
  assert len(lines) == 5 and all(l.startswith("ERROR") for l in lines), result.stdout
  assert "empty.txt" in lines[0] and "no usable document" in lines[0]
  assert "nobody.nxml" in lines[1] and "1 records without text" in lines[1]
  assert "empty.tfrecord" in lines[2] and "0 record(s)" in lines[2]
  assert "one.txt" in lines[3] and "process 1 of 2" in lines[3]
  assert "1 for other processes" in lines[3]
  assert "empty.txt" in lines[4] and not list(tmp_path.glob("out-*.tfrecord"))


def test_static_writer_refuses_empty_shards(tmp_path, vocab):
  """Fewer examples than shards: the shards are removed and the error says why."""
  (tmp_path / "one.txt").write_text("the gene.\n")
  config = pretraining.default_config()
  config.update(train_files=f"{tmp_path}/one.txt", vocab_path=str(vocab), dupe_factor=1,
                holdout_every=0)
  with pytest.raises(InputError, match="for 4 shards; no shard may be empty"):
    write_static_examples(config, f"{tmp_path}/out-{{shard}}.tfrecord", 4)
  assert not list(tmp_path.glob("out-*.tfrecord"))


class _BlockingSource:
  """A batch source whose next() never returns (input that never arrives)."""

  def __init__(self):
    self.release = threading.Event()

  def __next__(self):
    self.release.wait()
    raise StopIteration

  def get_state(self):
    return {}


def test_sigterm_ends_a_wait_on_input():
  source = _BlockingSource()
  batches = pretrain_data.InterruptibleBatches(source, poll_seconds=0.05)
  flag = loop.PreemptionFlag().install()
  timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
  try:
    timer.start()
    with pytest.raises(loop.InputWaitInterrupted, match="SIGTERM while waiting "
                       "for input batch 1"):
      next(batches)
    assert flag.is_set()
  finally:
    timer.cancel()
    flag.uninstall()
    source.release.set()


class _StallingSource:
  """Delivers `good` batches, then blocks; its state counts what next() has started."""

  def __init__(self, good: int):
    self.good, self.started = good, 0
    self.release = threading.Event()

  def __next__(self):
    self.started += 1
    if self.started > self.good:
      self.release.wait()
    return {"n": np.float32(1)}

  def get_state(self):
    return {"batches_consumed": self.started}


def test_sigterm_while_waiting_on_input_saves_the_delivered_steps(tmp_path):
  """The loop saves on an interrupted wait, with the state of the batches delivered (not
  the one whose fetch was abandoned), so a restart resumes exactly."""
  source = _StallingSource(good=3)
  batches = pretrain_data.InterruptibleBatches(source, poll_seconds=0.05)
  manager = CheckpointManager(tmp_path / "ckpt", keep=5)
  writer = MetricsWriter(str(tmp_path), "metrics")

  def train_step(state, batch):
    step = state["step"] + 1
    loss = 1.0 / step
    metrics = {k: loss for k in ("loss", "grad_norm", "learning_rate")}
    return {"step": step}, dict(metrics, num_tokens=batch["n"], is_finite=True)

  flag = loop.PreemptionFlag().install()
  timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
  try:
    timer.start()
    result = loop.run(state={"step": jnp.int32(0)}, train_step=train_step, batches=batches,
                      to_global=lambda b: b, data_state=batches.get_state,
                      checkpoints=manager, writer=writer,
                      config=loop.LoopConfig(total_steps=10, log_every=1,
                                             checkpoint_every=100),
                      preemption=flag, log_fn=lambda line: None)
  finally:
    timer.cancel()
    flag.uninstall()
    source.release.set()
  assert result.preempted and result.final_step == 3
  assert manager.all_steps() == [3]
  _, data = manager.restore(3, {"step": jnp.int32(0)})
  assert data == {"batches_consumed": 3}  # the 4th fetch had started; it is not counted
  manager.close()


def test_interruptible_batches_pass_batches_errors_and_state_through():
  batches = pretrain_data.InterruptibleBatches(pretrain_data.SyntheticBatches(
      batch_size=2, seq_len=8, num_predictions=2, vocab_size=30, seed=0))
  first = next(batches)
  assert first["input_ids"].shape == (2, 8) and batches.get_state()["batches_consumed"] == 1
  with pytest.raises(StopIteration):
    next(pretrain_data.InterruptibleBatches(iter([])))


@pytest.mark.slow
def test_sigterm_stops_pretraining_waiting_on_a_fifo(tmp_path, vocab):
  """End to end: the corpus is a FIFO nobody writes; SIGTERM ends the run at once, as a
  preemption (saved, exit 0)."""
  fifo = tmp_path / "corpus.txt"
  os.mkfifo(fifo)
  args = [sys.executable, "-m", "experiments.pretrain",
          "--config=experiments/configs/pretrain.py:tiny", f"--workdir={tmp_path / 'w'}",
          f"--config.vocab_path={vocab}", f"--config.train_files={fifo}",
          "--config.eval_steps=0", "--config.batch_size=8", "--config.total_steps=3",
          "--config.max_seq_length=16", "--config.max_predictions_per_seq=2",
          "--config.tensorboard=False"]
  process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  try:
    writer = os.open(fifo, os.O_WRONLY)  # returns once the trainer opened it to read
    time.sleep(2)  # let the main thread reach its polling wait (no timing is asserted)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    os.close(writer)
  finally:
    if process.poll() is None:
      process.kill()
  assert process.returncode == 0, output[-3000:]
  assert "SIGTERM while waiting for input" in output, output[-3000:]
  assert "preempted at step 0: checkpoint saved" in output, output[-3000:]
  assert (tmp_path / "w" / "checkpoints" / "0").is_dir()
