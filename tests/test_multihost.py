"""2 processes x 4 CPU devices (jax.distributed on localhost, gloo) == 1 process x 8 devices."""
import socket

import jax
import numpy as np
import pytest

from biobert_jax.train.metrics_writer import read_jsonl

from _pretrain_util import params_of, start_launcher

# Subprocess launchers: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

STEPS = {"total_steps": 4, "checkpoint_every": 2}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(data_dir, tmp_path):
  _two_processes_match_one(data_dir, tmp_path / "single", tmp_path / "multi")


def test_two_processes_share_a_gs_workdir(data_dir, tmp_path, bucket):
  """The same on a gs:// workdir (Cloud Storage emulator): process 0 writes the shared
  files, both write their checkpoint shards through orbax, the export reads back."""
  from biobert_jax import fs
  multi = f"{bucket}/multi"
  _two_processes_match_one(data_dir, tmp_path / "single", multi)
  names = fs.listdir(multi)
  assert {"config.json", "metrics.jsonl", "checkpoints", "export"} <= set(names), names
  assert fs.listdir(fs.join(multi, "checkpoints")) == ["2", "4"]


def _two_processes_match_one(data_dir, single_dir, multi_dir):
  from biobert_jax import fs
  port = _free_port()
  coordinator = [f"--coordinator_address=localhost:{port}", "--num_processes=2"]
  procs = [start_launcher(data_dir, single_dir, num_devices=8, **STEPS)]
  for pid in range(2):  # both processes share the workdir, like hosts of a pod slice
    procs.append(start_launcher(data_dir, multi_dir, num_devices=4,
                                extra=coordinator + [f"--process_id={pid}"], **STEPS))
  outs = [p.communicate(timeout=400)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  single = read_jsonl(fs.join(single_dir, "metrics.jsonl"))
  multi = read_jsonl(fs.join(multi_dir, "metrics.jsonl"))  # written by process 0 only
  assert [r["step"] for r in multi] == [1, 2, 3, 4]
  for a, b in zip(single, multi):
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
  assert single[0]["loss"] != single[-1]["loss"]
  for a, b in zip(jax.tree.leaves(params_of(fs.join(single_dir, "export"))),
                  jax.tree.leaves(params_of(fs.join(multi_dir, "export")))):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
  # Really two processes: the gloo collectives connected them.
  assert "Gloo" in outs[1] + outs[2]
