"""Orbax checkpoints: keep policy, resharding restore, kill mid-save, native format."""
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from biobert_jax import checkpoints, models, sharding
from biobert_jax.checkpoints import native
from biobert_jax.checkpoints.manager import CheckpointManager

from _pretrain_util import REPO, child_env, tiny_bert_config


def _state(mesh, scale=1.0):
  spec = {"w": P("fsdp", "tensor"), "b": P("tensor"), "step": P()}
  host = {"w": np.arange(64, dtype=np.float32).reshape(8, 8) * scale,
          "b": np.arange(8, dtype=np.float32), "step": np.int32(3)}
  return jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), host, spec), host


def test_keeps_last_n_plus_every_k(tmp_path):
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  state, _ = _state(mesh)
  manager = CheckpointManager(tmp_path, keep=2, keep_every=4)
  for step in range(1, 10):
    assert manager.save(step, state, {"batches_consumed": step})
  manager.wait()
  assert manager.all_steps() == [4, 8, 9]
  assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [4, 8, 9]
  manager.close()


def test_restore_onto_a_different_mesh(tmp_path):
  mesh8 = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  state, host = _state(mesh8)
  manager = CheckpointManager(tmp_path)
  manager.save(5, state, {"batches_consumed": 5, "source": "x"})
  manager.close()

  mesh4 = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 4}, jax.devices()[4:])
  target = {"w": jax.ShapeDtypeStruct((8, 8), np.float32, sharding=NamedSharding(mesh4, P(None, "tensor"))),  # noqa: E501
            "b": jax.ShapeDtypeStruct((8,), np.float32, sharding=NamedSharding(mesh4, P("tensor"))),
            "step": jax.ShapeDtypeStruct((), np.int32, sharding=NamedSharding(mesh4, P()))}
  reader = CheckpointManager(tmp_path)
  restored, data_state = reader.restore(None, target)
  assert data_state == {"batches_consumed": 5, "source": "x"}
  assert restored["w"].sharding == target["w"].sharding
  assert {d.id for d in restored["w"].sharding.device_set} == {d.id for d in jax.devices()[4:]}
  np.testing.assert_array_equal(np.asarray(restored["w"]), host["w"])
  np.testing.assert_array_equal(np.asarray(restored["b"]), host["b"])
  reader.close()
  with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
    CheckpointManager(tmp_path / "empty").restore(None, target)


_KILL_MID_SAVE = textwrap.dedent("""
    import os, signal, sys
    import jax, numpy as np
    from biobert_jax.checkpoints.manager import CheckpointManager
    manager = CheckpointManager(sys.argv[1])
    manager.save(1, {"w": np.ones((4,), np.float32)}, {"step": 1})
    manager.wait()
    big = np.random.default_rng(0).standard_normal((64, 1024, 1024)).astype(np.float32)
    manager.save(2, {"w": big}, {"step": 2})  # async: returns while the write goes on
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.slow
def test_kill_mid_save_leaves_the_previous_step_readable(tmp_path):
  proc = subprocess.run([sys.executable, "-c", _KILL_MID_SAVE, str(tmp_path)], cwd=REPO,
                        env=child_env(1), capture_output=True, text=True, timeout=240)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
  leftovers = [p.name for p in tmp_path.iterdir() if "tmp" in p.name]
  manager = CheckpointManager(tmp_path)
  latest = manager.latest_step()
  if leftovers:  # the kill hit the write of step 2 (the normal case): step 1 is latest.
    assert latest == 1, (leftovers, manager.all_steps())
  assert latest in (1, 2)
  target = {"w": jax.ShapeDtypeStruct((4,) if latest == 1 else (64, 1024, 1024), np.float32)}
  restored, data_state = manager.restore(latest, target)
  assert data_state == {"step": latest}
  if latest == 1:
    np.testing.assert_array_equal(np.asarray(restored["w"]), 1.0)
  # A resumed run saves the same step again over the leftover.
  manager.save(2, {"w": np.full((4,), 2.0, np.float32)}, {"step": 2})
  manager.wait()
  assert manager.latest_step() == 2
  restored, _ = manager.restore(2, {"w": jax.ShapeDtypeStruct((4,), np.float32)})
  np.testing.assert_array_equal(np.asarray(restored["w"]), 2.0)
  manager.close()


def test_native_roundtrip_and_workdir_loading(tmp_path):
  config = tiny_bert_config()
  model = models.BertForPreTraining(config)
  params = jax.device_get(models.init_params(model, jax.random.PRNGKey(0)))
  out = native.save_native(config, params, tmp_path / "export")
  assert (out / "bert_config.json").exists() and (out / "params").is_dir()
  loaded_config, loaded = checkpoints.load(out)  # the format dispatcher finds it
  assert loaded_config == config
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(a, b)
  assert jax.tree.structure(params) == jax.tree.structure(loaded)

  # A pre-training workdir: bert_config.json + checkpoints/<step>/; only params are read.
  workdir = tmp_path / "workdir"
  workdir.mkdir()
  config.to_json_file(workdir / "bert_config.json")
  bumped = jax.tree.map(lambda x: x + 1, params)
  manager = CheckpointManager(workdir / "checkpoints")
  manager.save(7, {"params": bumped, "opt_state": {"mu": bumped}, "step": np.int32(7)}, {})
  manager.close()
  config2, from_workdir = native.load_native(workdir)
  assert config2 == config
  for a, b in zip(jax.tree.leaves(bumped), jax.tree.leaves(from_workdir)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(FileNotFoundError, match="bert_config.json"):
    native.load_native(tmp_path / "nowhere")
