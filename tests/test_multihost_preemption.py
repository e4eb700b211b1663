"""SIGTERM to one of two processes: both save the same step, exit 0, and resume exactly."""
import re
import signal
import socket

import jax
import numpy as np
import pytest

from biobert_jax.train.metrics_writer import read_jsonl

from _pretrain_util import params_of, start_launcher

pytestmark = pytest.mark.slow  # four launcher subprocesses

TOTAL = 40
RUN = {"total_steps": TOTAL, "checkpoint_every": 1000, "keep_checkpoints": 3}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _pair(data_dir, workdir, cache_dir):
  coordinator = [f"--coordinator_address=localhost:{_free_port()}", "--num_processes=2"]
  return [start_launcher(data_dir, workdir, num_devices=4, cache_dir=cache_dir,
                         extra=coordinator + [f"--process_id={pid}"], **RUN)
          for pid in range(2)]


def test_sigterm_on_one_process_stops_both_at_one_saved_step(data_dir, tmp_path):
  cache = tmp_path / "cache"
  reference = tmp_path / "reference"
  ref_proc = start_launcher(data_dir, reference, num_devices=8, cache_dir=cache, **RUN)
  workdir = tmp_path / "multi"
  procs = _pair(data_dir, workdir, cache)
  lines, seen = [], None
  for line in procs[0].stdout:  # process 0 prints the progress lines
    lines.append(line)
    m = re.match(r"step (\d+)/", line)
    if m and int(m.group(1)) >= 3:
      seen = int(m.group(1))
      procs[1].send_signal(signal.SIGTERM)  # the process that does not print or save metadata
      break
  outs = [procs[0].communicate(timeout=400)[0], procs[1].communicate(timeout=400)[0]]
  outs[0] = "".join(lines) + outs[0]
  assert seen is not None, outs[0][-3000:]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  stopped = [int(re.search(r"preempted at step (\d+)", out).group(1)) for out in outs]
  assert stopped[0] == stopped[1] and seen <= stopped[0] < TOTAL, stopped
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved == [stopped[0]]  # the preemption save (no periodic one before it)
  assert (workdir / "checkpoints" / str(stopped[0]) / "checksums.json").exists()
  assert not (workdir / "export").exists()

  resumed = _pair(data_dir, workdir, cache)
  outs = [p.communicate(timeout=400)[0] for p in resumed]
  for p, out in zip(resumed, outs):
    assert p.returncode == 0, out[-3000:]
  first = int(re.search(r"step (\d+)/", outs[0]).group(1))
  assert first == stopped[0] + 1, outs[0][-2000:]
  ref_out = ref_proc.communicate(timeout=400)[0]
  assert ref_proc.returncode == 0, ref_out[-3000:]
  ref_rows = read_jsonl(str(reference / "metrics.jsonl"))
  rows = read_jsonl(str(workdir / "metrics.jsonl"))
  assert [r["step"] for r in rows] == list(range(1, TOTAL + 1))
  for a, b in zip(rows, ref_rows):
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), a["step"]
  for a, b in zip(jax.tree.leaves(params_of(workdir / "export")),
                  jax.tree.leaves(params_of(reference / "export"))):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_sigterm_during_input_waits_of_the_corpus_pipeline(data_dir, tmp_path):
  """The tf.data pipeline (InterruptibleBatches): a SIGTERM that lands while a process
  waits for input must not end that process alone (the old Python-handler path raised
  there when the signal landed inside the wait)."""
  corpus = {"data_source": "corpus",
            "train_files": str(data_dir / "pretrain" / "pubmed_abstracts.txt")}
  workdir = tmp_path / "multi"
  coordinator = [f"--coordinator_address=localhost:{_free_port()}", "--num_processes=2"]
  procs = [start_launcher(data_dir, workdir, num_devices=4, cache_dir=tmp_path / "cache",
                          extra=coordinator + [f"--process_id={pid}"], **RUN, **corpus)
           for pid in range(2)]
  lines, seen = [], None
  for line in procs[0].stdout:
    lines.append(line)
    m = re.match(r"step (\d+)/", line)
    if m and int(m.group(1)) >= 3:
      seen = int(m.group(1))
      procs[1].send_signal(signal.SIGTERM)
      break
  outs = [procs[0].communicate(timeout=400)[0], procs[1].communicate(timeout=400)[0]]
  outs[0] = "".join(lines) + outs[0]
  assert seen is not None, outs[0][-3000:]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  stopped = [int(re.search(r"preempted at step (\d+)", out).group(1)) for out in outs]
  assert stopped[0] == stopped[1] and seen <= stopped[0] < TOTAL, stopped
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved == [stopped[0]]
