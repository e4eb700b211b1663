"""The loop's NaN guard, logging cadence and preemption flag, with a scripted train step; the
metrics writer's TensorBoard files."""
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from biobert_jax.checkpoints.manager import CheckpointManager
from biobert_jax.train import loop
from biobert_jax.train.metrics_writer import MetricsWriter, read_jsonl


def _scripted_step(nan_at=None, preempt=None, preempt_at=None):
  """A train step whose loss is 1/step, NaN at step `nan_at`."""
  def train_step(state, batch):
    step = state["step"] + 1
    loss = jnp.where(step == (nan_at or -1), jnp.nan, 1.0 / step)
    if preempt is not None and int(step) == preempt_at:
      preempt.set()
    metrics = {k: loss for k in ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy",
                                 "nsp_accuracy", "grad_norm", "learning_rate")}
    metrics.update(num_tokens=jnp.float32(batch["n"]), is_finite=jnp.isfinite(loss))
    return {"step": step, "w": state["w"] + batch["n"]}, metrics
  return train_step


class _Counter:
  def __init__(self):
    self.consumed = 0

  def __next__(self):
    self.consumed += 1
    return {"n": np.float32(10)}

  def get_state(self):
    return {"batches_consumed": self.consumed}


def _run(tmp_path, total, **kw):
  batches = _Counter()
  manager = CheckpointManager(tmp_path / "ckpt", keep=10)
  writer = MetricsWriter(str(tmp_path), "metrics")
  preemption = kw.pop("preemption", None)
  try:
    return loop.run(state={"step": jnp.int32(0), "w": jnp.float32(0)},
                    train_step=_scripted_step(preempt=preemption, **kw), batches=batches,
                    to_global=lambda b: b, data_state=batches.get_state,
                    checkpoints=manager, writer=writer,
                    config=loop.LoopConfig(total_steps=total, log_every=3,
                                           checkpoint_every=2),
                    preemption=preemption, log_fn=lambda line: None), manager
  finally:
    manager.close()


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  with pytest.raises(loop.NonFiniteLossError, match=r"step 5: non-finite loss=nan.*step 4"):
    _run(tmp_path, total=10, nan_at=5)
  manager = CheckpointManager(tmp_path / "ckpt")
  assert manager.all_steps() == [2, 4]  # nothing at or after the NaN step was saved
  _, data = manager.restore(4, {"step": jnp.int32(0), "w": jnp.float32(0)})
  assert data == {"batches_consumed": 4}
  manager.close()


def test_nan_before_any_checkpoint_says_none_was_saved(tmp_path):
  with pytest.raises(loop.NonFiniteLossError, match=r"step 1: .*no checkpoint was saved yet"):
    _run(tmp_path, total=10, nan_at=1)
  assert CheckpointManager(tmp_path / "ckpt").all_steps() == []


def test_logs_every_n_steps_and_always_the_last(tmp_path):
  result, _ = _run(tmp_path, total=7)
  rows = read_jsonl(str(tmp_path / "metrics.jsonl"))
  assert [r["step"] for r in rows] == [3, 6, 7]
  # Row 3 averages steps 1..3 of the scripted loss 1/step.
  assert rows[0]["loss"] == pytest.approx(np.mean([1, 1 / 2, 1 / 3]), rel=1e-6)
  assert set(rows[0]) >= {"step", "loss", "mlm_loss", "nsp_loss", "mlm_accuracy",
                          "nsp_accuracy", "tokens_per_sec", "learning_rate"}
  assert result.final_step == 7 and not result.preempted
  assert CheckpointManager(tmp_path / "ckpt").all_steps() == [2, 4, 6, 7]


def test_preemption_flag_saves_the_current_step_and_returns(tmp_path):
  flag = loop.PreemptionFlag()
  result, _ = _run(tmp_path, total=10, preemption=flag, preempt_at=3)
  assert result.preempted and result.final_step == 3
  assert CheckpointManager(tmp_path / "ckpt").all_steps() == [2, 3]


_TB_SCRIPT = r"""
import glob, sys
from biobert_jax.train.metrics_writer import MetricsWriter
w = MetricsWriter(sys.argv[1], "metrics", tensorboard_dir=sys.argv[1] + "/tb")
w.write(3, {"loss": 0.5, "learning_rate": 2e-5})
w.write(6, {"loss": 0.25, "learning_rate": 1e-5})
w.close()
print("tensorflow" in sys.modules)
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util
(path,) = glob.glob(sys.argv[1] + "/tb/events.out.tfevents.*")
print([(e.step, v.tag, float(tensor_util.make_ndarray(v.tensor)))
       for e in event_file_loader.EventFileLoader(path).Load() for v in e.summary.value])
"""


def test_tensorboard_events_are_written_without_importing_tensorflow(tmp_path):
  """The writer reaches a local directory through tensorboard's TF-free stub (a subprocess:
  this one may have imported TensorFlow already), and the events read back."""
  out = subprocess.run([sys.executable, "-c", _TB_SCRIPT, str(tmp_path)], check=True,
                       capture_output=True, text=True, timeout=120).stdout.splitlines()
  assert out[-2] == "False"
  assert out[-1] == str([(3, "loss", 0.5), (3, "learning_rate", float(np.float32(2e-5))),
                         (6, "loss", 0.25), (6, "learning_rate", float(np.float32(1e-5)))])
