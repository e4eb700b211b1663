"""The launcher resumes exactly: after SIGKILLs at random steps, after SIGTERM, on a new mesh.

All runs are child processes of `python -m experiments.pretrain` (tiny model, synthetic
batches, 8 CPU devices, a checkpoint every 3 steps, so a restart also replays steps)
sharing one compilation cache.
"""
import json
import random
import re
import signal

import jax
import numpy as np
import pytest

from biobert_jax.train.metrics_writer import read_jsonl

from _pretrain_util import params_of, run_launcher, start_launcher

# Subprocess launchers: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

TOTAL = 24
RUN = {"total_steps": TOTAL, "checkpoint_every": 3}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def reference(data_dir, cache_dir, tmp_path_factory):
  """An uninterrupted run of TOTAL steps on the (2, 2, 2) mesh."""
  workdir = tmp_path_factory.mktemp("reference")
  run_launcher(data_dir, workdir, cache_dir=cache_dir, **RUN)
  return workdir


def _run_and_signal(data_dir, workdir, cache_dir, at_step, sig, **overrides):
  """Starts the launcher, sends `sig` once it printed step >= at_step; returns (rc, step, out)."""
  proc = start_launcher(data_dir, workdir, cache_dir=cache_dir, **RUN, **overrides)
  lines, seen = [], None
  for line in proc.stdout:
    lines.append(line)
    m = re.match(r"step (\d+)/", line)
    if m and int(m.group(1)) >= at_step:
      seen = int(m.group(1))
      proc.send_signal(sig)
      break
  rest, _ = proc.communicate(timeout=300)
  out = "".join(lines) + rest
  assert seen is not None, f"run ended before step {at_step}:\n{out[-3000:]}"
  return proc.returncode, seen, out


def _assert_same_run(workdir, reference, atol):
  ref_rows = read_jsonl(str(reference / "metrics.jsonl"))
  rows = read_jsonl(str(workdir / "metrics.jsonl"))
  assert [r["step"] for r in rows] == list(range(1, TOTAL + 1))
  for a, b in zip(rows, ref_rows):
    assert a["loss"] == pytest.approx(b["loss"], abs=max(atol, 1e-7)), a["step"]
  for a, b in zip(jax.tree.leaves(params_of(workdir / "export")),
                  jax.tree.leaves(params_of(reference / "export"))):
    np.testing.assert_allclose(a, b, atol=atol, rtol=0)


def test_sigkill_at_three_random_steps_then_resume_is_exact(data_dir, cache_dir, reference,
                                                          tmp_path):
  kill_steps = sorted(random.Random().sample(range(3, TOTAL - 6), 3))
  killed_at = []
  for target in kill_steps:
    target = max(target, (killed_at[-1] + 1) if killed_at else 0)
    rc, seen, out = _run_and_signal(data_dir, tmp_path, cache_dir, target, signal.SIGKILL)
    assert rc == -signal.SIGKILL, out[-3000:]
    killed_at.append(seen)
  out = run_launcher(data_dir, tmp_path, cache_dir=cache_dir, **RUN)
  # The last restart resumed (did not start over): its first step is after the last kill.
  first = int(re.search(r"step (\d+)/", out).group(1))
  assert first > 1, out[-2000:]
  _assert_same_run(tmp_path, reference, atol=1e-6)
  print("killed at steps", killed_at)


def test_sigterm_saves_and_resume_on_another_mesh(data_dir, cache_dir, reference, tmp_path):
  rc, seen, out = _run_and_signal(data_dir, tmp_path, cache_dir, 5, signal.SIGTERM)
  assert rc == 0, out[-3000:]
  assert "preempted at step" in out
  stopped = int(re.search(r"preempted at step (\d+)", out).group(1))
  assert seen <= stopped < TOTAL
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved[-1] == stopped  # the preemption save is the latest step (even off-period)
  assert not (tmp_path / "export").exists()  # no export of an unfinished run
  # Resume on a (1, 8, 1) mesh: same numbers up to reduction order.
  run_launcher(data_dir, tmp_path, cache_dir=cache_dir, **RUN,
               **{"mesh.data": 1, "mesh.fsdp": 8, "mesh.tensor": 1})
  _assert_same_run(tmp_path, reference, atol=1e-5)
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1, "auto": False}
