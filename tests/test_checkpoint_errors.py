"""Checkpoint problems say what is missing; a full disk is one line with the previous step
intact."""
from __future__ import annotations

import errno
import os
import pathlib
import subprocess

import jax
import numpy as np
import pytest

from biobert_jax import checkpoints
from biobert_jax.checkpoints import CheckpointError, native
from biobert_jax.checkpoints.manager import CheckpointManager, CheckpointWriteError

# ---- checkpoint diagnosis


def _tiny_native(tmp_path) -> pathlib.Path:
  from biobert_jax.config import BertConfig
  bert = BertConfig.preset("tiny", vocab_size=16, hidden_size=8, num_attention_heads=2,
                           intermediate_size=16, max_position_embeddings=16,
                           num_hidden_layers=1)
  params = {"encoder": {"w": np.ones((4, 4), np.float32)}}
  return native.save_native(bert, params, tmp_path / "native")


def test_tf1_directory_without_index_says_so(tmp_path):
  (tmp_path / "bert_config.json").write_text("{}")
  (tmp_path / "model.ckpt-100.data-00000-of-00001").write_bytes(b"\0")
  for path in (tmp_path, tmp_path / "model.ckpt-100"):
    with pytest.raises(CheckpointError, match=r"model.ckpt-100.data-00000-of-00001\) but no "
                       r"model.ckpt-100.index"):
      checkpoints.load(path)


@pytest.mark.parametrize("missing", ["_METADATA", "manifest.ocdbt", "ocdbt.process_0"])
def test_native_checkpoint_missing_a_file_names_it(tmp_path, missing):
  out = _tiny_native(tmp_path)
  target = out / "params" / missing
  if target.is_dir():
    import shutil
    shutil.rmtree(target)
  else:
    target.unlink()
  with pytest.raises(CheckpointError, match=rf"missing {target}"):
    checkpoints.load(out)


def test_incomplete_training_step_is_named_on_resume(tmp_path):
  manager = CheckpointManager(tmp_path / "ck", async_save=False)
  state = {"w": np.ones((3,), np.float32)}
  manager.save(1, state)
  manager.close()
  (tmp_path / "ck" / "1" / "state" / "_METADATA").unlink()
  manager = CheckpointManager(tmp_path / "ck", read_only=True)
  target = {"w": jax.ShapeDtypeStruct((3,), np.float32,
                                      sharding=jax.sharding.SingleDeviceSharding(
                                          jax.devices()[0]))}
  with pytest.raises(CheckpointError, match=r"step 1 is incomplete, missing .*_METADATA"):
    manager.restore(1, target)
  with pytest.raises(CheckpointError, match=r"missing .*_METADATA"):
    manager.restore_params(1)


@pytest.mark.parametrize("async_save", [True, False])
def test_full_disk_is_one_line_and_keeps_the_previous_step(tmp_path, async_save):
  """A real 1 MiB tmpfs when we may mount one (CI runs as root); otherwise orbax's save
  fails the way tensorstore reports a full disk."""
  mount = tmp_path / "small_disk"
  mount.mkdir()
  mounted = os.geteuid() == 0 and subprocess.run(
      ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
      capture_output=True).returncode == 0
  try:
    manager = CheckpointManager(mount / "ck", async_save=async_save)
    manager.save(1, {"params": {"w": np.ones((100, 100), np.float32)}}, {"batches": 1})
    manager.wait()
    if not mounted:
      def full(*args, **kwargs):
        raise ValueError("RESOURCE_EXHAUSTED: Failed to write 4000000 bytes: No space left "
                         "on device [os_error_code='28']")
      manager._manager.save = full
    big = {"params": {"w": np.random.default_rng(0).random((1000, 1000), np.float32)}}
    with pytest.raises(CheckpointWriteError) as error:
      manager.save(2, big, {"batches": 2})
      manager.wait()
    message = str(error.value)
    assert "\n" not in message and error.value.errno == errno.ENOSPC
    assert message.startswith(f"{mount / 'ck'}: could not write step 2: No space left")
    assert "step 1 is still the latest complete checkpoint" in message
    manager.close()
    reader = CheckpointManager(mount / "ck", read_only=True)
    assert reader.latest_step() == 1
    step, params = reader.restore_params()
    assert step == 1 and np.array_equal(params["w"], np.ones((100, 100), np.float32))
    reader.close()
  finally:
    if mounted:
      subprocess.run(["umount", str(mount)], check=False)
