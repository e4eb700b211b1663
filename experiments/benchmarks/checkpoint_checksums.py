r"""Cost of the per-file SHA-256 checksums on a BERT-base-sized train state.

  PYTHONPATH=. python -m experiments.benchmarks.checkpoint_checksums --out=/tmp/ckpt_bench

State: BERT-base pre-training params (110M, float32) + AdamW's two moments = the
{params, opt_state} that checkpoints/<step>/state holds. Times (best of --repeats): the
orbax save (async, until committed), `integrity.record` of the step, the orbax restore,
and `integrity.verify`; the checksum overhead is record/save and verify/restore.
"""
import json
import os
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags

from biobert_jax import models
from biobert_jax.checkpoints import integrity
from biobert_jax.checkpoints.manager import CheckpointManager
from biobert_jax.config import BertConfig

_OUT = flags.DEFINE_string("out", "/tmp/ckpt_checksum_bench", "Scratch directory.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats (best is reported).")
_PRESET = flags.DEFINE_string("preset", "base", "BertConfig preset.")


def _state() -> dict:
  shapes = models.param_shapes(models.BertForPreTraining(BertConfig.preset(_PRESET.value)))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.random(s.shape, np.float32), shapes)
  return {"params": params, "mu": jax.tree.map(np.copy, params),
          "nu": jax.tree.map(np.copy, params), "step": np.int32(1)}


def main(argv):
  del argv
  state = _state()
  n_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])), state)
  times = {"save": [], "record": [], "restore": [], "verify": []}
  for r in range(_REPEATS.value):
    shutil.rmtree(_OUT.value, ignore_errors=True)
    manager = CheckpointManager(_OUT.value, async_save=True)
    t = time.perf_counter()
    manager.save(1, state)
    manager._manager.wait_until_finished()  # the commit alone, without the record
    times["save"].append(time.perf_counter() - t)
    manager._unrecorded = []
    t = time.perf_counter()
    integrity.record(manager.step_dir(1))
    times["record"].append(time.perf_counter() - t)
    t = time.perf_counter()
    manager._manager.restore(1, args=ocp.args.Composite(  # orbax alone, no verify
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    times["restore"].append(time.perf_counter() - t)
    t = time.perf_counter()
    assert manager.verify(1)
    times["verify"].append(time.perf_counter() - t)
    manager.close()
  best = {k: round(min(v), 3) for k, v in times.items()}
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(_OUT.value)
             for f in fs)
  best.update(state_mb=round(n_bytes / 2**20), on_disk_mb=round(size / 2**20),
              record_over_save=round(best["record"] / best["save"], 3),
              verify_over_restore=round(best["verify"] / best["restore"], 3),
              devices=jax.device_count(), backend=jax.default_backend())
  print(json.dumps(best))
  shutil.rmtree(_OUT.value, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
