"""The fine-tuning trainer: mesh equivalence, exact resume, workdir protection, guards.

Tiny random-init models over a character-level vocabulary and a few examples of the
shared corpora, so every run takes seconds of compute.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from biobert_jax.configs.overrides import apply_overrides
from biobert_jax.train import loop
from biobert_jax.train.metrics_writer import read_jsonl
from biobert_jax.trainers import finetune as finetune_lib
from biobert_jax.trainers import finetune_program
from biobert_jax.trainers import workdir as workdir_lib
from experiments.configs.finetune import get_config

REPO = pathlib.Path(__file__).resolve().parents[1]
FAST = {"xla_backend_optimization_level": 0}
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,;:()[]-/'\"%+=<>?!&*_"


@pytest.fixture(scope="module")
def char_vocab(tmp_path_factory) -> str:
  """Specials + single characters (+ ## forms): every lower-cased ASCII word tokenises."""
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_CHARS, *(f"##{c}" for c in _CHARS)]
  path.write_text("\n".join(pieces) + "\n")
  return str(path)


def _overrides(task, data_dir, vocab):
  common = {"init_checkpoint": "", "model_preset": "tiny", "vocab_path": vocab,
            "lowercase": 1, "batch_size": 8, "eval_batch_size": 8, "log_every": 1,
            "optim.learning_rate": 1e-3, "optim.warmup_proportion": 0.0, "bucket_length": 0,
            "group_by_length": 0, "save_model": False, "write_predictions": False,
            "tensorboard": False, "checkpoint_every": 100}
  per_task = {
      "ner": {"data_dir": str(data_dir / "ner/NCBI-disease"), "max_train_examples": 5,
              "max_eval_examples": 2, "max_seq_length": 32, "doc_stride": 16,
              "num_epochs": 2},
      "re": {"data_dir": str(data_dir / "re/gad"), "max_train_examples": 40,
             "max_eval_examples": 8, "max_seq_length": 48, "num_epochs": 1},
      "qa": {"data_dir": str(data_dir / "qa/bioasq6b"), "max_train_examples": 1,
             "max_eval_examples": 1, "max_seq_length": 64, "doc_stride": 48,
             "qa.max_query_length": 16, "qa.test_files": (), "qa.golden_files": (),
             "num_epochs": 2},
  }
  return {**common, **per_task[task]}


def _config(task, data_dir, vocab, **overrides):
  return apply_overrides(get_config(task), {**_overrides(task, data_dir, vocab), **overrides})


def _losses(workdir):
  return [r["loss"] for r in read_jsonl(str(pathlib.Path(workdir) / "metrics.jsonl"))]


@pytest.mark.slow  # six tiny trainings: about a minute each on the loaded 2-core box
@pytest.mark.parametrize("task", ["ner", "re", "qa"])
def test_same_losses_on_one_device_and_a_2x2x2_mesh(task, tmp_path, data_dir, char_vocab):
  losses = {}
  for name, mesh, devices in (("one", (1, 1, 1), jax.devices()[:1]),
                              ("mesh", (2, 2, 2), jax.devices()[:8])):
    config = _config(task, data_dir, char_vocab, **{"mesh.data": mesh[0],
                                                    "mesh.fsdp": mesh[1],
                                                    "mesh.tensor": mesh[2]})
    finetune_lib.run(config, str(tmp_path / name), compiler_options=FAST, devices=devices)
    losses[name] = _losses(tmp_path / name)[:5]
  assert len(losses["one"]) == 5, losses
  assert all(np.isfinite(losses["one"]))
  np.testing.assert_allclose(losses["mesh"], losses["one"], rtol=0, atol=1e-5)


def test_batch_size_must_divide_the_batch_shards(tmp_path, data_dir, char_vocab):
  config = _config("ner", data_dir, char_vocab, batch_size=6,
                   **{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2})
  with pytest.raises(ValueError, match=r"config.batch_size=6 is not divisible by the 4"):
    finetune_lib.run(config, str(tmp_path / "w"), devices=jax.devices()[:8])
  assert not (tmp_path / "w").exists()  # refused before writing anything


@pytest.mark.slow  # four tiny fine-tunes, ~35 s
def test_a_second_run_reuses_the_jitted_steps_and_ends_as_a_fresh_run_would(
    tmp_path, data_dir, char_vocab, monkeypatch):
  monkeypatch.setattr(finetune_program, "_STEPS_CACHE", type(finetune_program._STEPS_CACHE)())
  one = jax.devices()[:1]
  run = lambda workdir, **o: finetune_lib.run(
      _config("ner", data_dir, char_vocab, **o), str(tmp_path / workdir),
      compiler_options=FAST, devices=one)
  run("seed0", seed=0)
  (key, steps), = finetune_program._STEPS_CACHE.items()
  run("seed1", seed=1)  # another seed: same program, reused
  assert list(finetune_program._STEPS_CACHE.items()) == [(key, steps)]
  assert all(s is t for s, t in zip(finetune_program._STEPS_CACHE[key], steps))
  finetune_program._STEPS_CACHE.clear()
  run("seed1_fresh", seed=1)  # the same run with nothing cached
  assert _losses(tmp_path / "seed1") == _losses(tmp_path / "seed1_fresh")
  assert _comparable(tmp_path / "seed1") == _comparable(tmp_path / "seed1_fresh")
  assert _losses(tmp_path / "seed0") != _losses(tmp_path / "seed1")
  run("lr", seed=1, **{"optim.learning_rate": 5e-4})  # another optimiser: another program
  assert len(finetune_program._STEPS_CACHE) == 2
  assert _losses(tmp_path / "lr") != _losses(tmp_path / "seed1")


@pytest.mark.slow  # two tiny fine-tunes with several bucket shapes, ~30 s
def test_compiling_ahead_covers_every_shape_and_changes_nothing(
    tmp_path, data_dir, char_vocab, monkeypatch):
  monkeypatch.setattr(finetune_program, "_STEPS_CACHE", type(finetune_program._STEPS_CACHE)())
  one = jax.devices()[:1]
  # Character pieces: sentences of 20-300 pieces, so windows of 96 come in several buckets.
  buckets = {"bucket_length": 16, "group_by_length": 2, "compile_threads": 2,
             "max_seq_length": 96, "doc_stride": 48, "max_train_examples": 12,
             "max_eval_examples": 6, "eval_batch_size": 2}
  finetune_lib.run(_config("ner", data_dir, char_vocab, **buckets), str(tmp_path / "ahead"),
                   compiler_options=FAST, devices=one)
  (train_step, predict_step), = finetune_program._STEPS_CACHE.values()
  # Every shape the run fed had been announced: nothing compiled on first use.
  assert train_step.on_demand == 0 and predict_step.on_demand == 0
  assert train_step.num_compiled >= 2 and predict_step.num_compiled >= 2
  finetune_program._STEPS_CACHE.clear()
  finetune_lib.run(_config("ner", data_dir, char_vocab, compile_ahead=False, **buckets),
                   str(tmp_path / "on_first_use"), compiler_options=FAST, devices=one)
  (train_step, predict_step), = finetune_program._STEPS_CACHE.values()
  assert train_step.num_compiled == 0 and train_step.on_demand > 0
  assert _losses(tmp_path / "ahead") == _losses(tmp_path / "on_first_use")
  assert _comparable(tmp_path / "ahead") == _comparable(tmp_path / "on_first_use")


def _snapshot(root: pathlib.Path) -> dict:
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
          if p.is_file()}


def test_final_dev_result_rescores_the_best_epochs_decoding_instead_of_predicting_again(
    tmp_path, data_dir, char_vocab, monkeypatch):
  from biobert_jax.trainers import finetune_eval
  calls = []
  predict_split = finetune_eval.predict_split
  monkeypatch.setattr(finetune_eval, "predict_split",
                      lambda *a, **k: calls.append(1) or predict_split(*a, **k))
  config = _config("ner", data_dir, char_vocab, write_predictions=True)  # 2 epochs
  one = jax.devices()[:1]
  finetune_lib.run(config, str(tmp_path / "kept"), compiler_options=FAST, devices=one)
  assert len(calls) == 3  # dev after each epoch, test once: dev is not predicted again
  finish = finetune_lib._finish  # the same run, made to predict dev again at the end
  monkeypatch.setattr(finetune_lib, "_finish",
                      lambda *a: finish(*a[:-1], None))  # dev_decoded: None
  calls.clear()
  finetune_lib.run(config, str(tmp_path / "again"), compiler_options=FAST, devices=one)
  assert len(calls) == 4
  assert _comparable(tmp_path / "kept") == _comparable(tmp_path / "again")
  for name in ("predictions_dev.conll", "predictions_test.conll"):
    assert (tmp_path / "kept" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_other_config_refuses_and_writes_nothing_then_overwrite_starts_afresh(
    tmp_path, data_dir, char_vocab):
  workdir = tmp_path / "w"
  first = _config("ner", data_dir, char_vocab)
  workdir_lib.check_or_record_config(str(workdir), first)
  (workdir / "eval_results.json").write_text('{"from": "the first run"}\n')
  before = _snapshot(workdir)
  second = _config("ner", data_dir, char_vocab, batch_size=16,
                   **{"ner.scheme": "iob1", "optim.learning_rate": 5e-3})
  with pytest.raises(workdir_lib.WorkdirConfigMismatch) as error:
    finetune_lib.run(second, str(workdir), compiler_options=FAST, devices=jax.devices()[:1])
  message = str(error.value)
  for key in ("optim.learning_rate: 0.001 -> 0.005", "batch_size: 8 -> 16",
              "ner.scheme: 'iob2' -> 'iob1'", "--config.overwrite=True"):
    assert key in message, message
  assert "log_every" not in message
  assert _snapshot(workdir) == before

  second.overwrite = True
  results = finetune_lib.run(second, str(workdir), compiler_options=FAST,
                             devices=jax.devices()[:1])
  recorded = json.loads((workdir / "config.json").read_text())
  assert recorded["optim"]["learning_rate"] == 5e-3 and recorded["ner"]["scheme"] == "iob1"
  assert json.loads((workdir / "eval_results.json").read_text())["dev"] == json.loads(
      json.dumps(results["dev"]))


def test_atomic_path_keeps_the_old_result_until_the_new_one_is_complete(tmp_path):
  final = tmp_path / "model"
  final.mkdir()
  (final / "params").write_text("old")
  with pytest.raises(RuntimeError):
    with workdir_lib.atomic_path(str(final)) as tmp:
      os.makedirs(tmp)
      (pathlib.Path(tmp) / "params").write_text("half")
      raise RuntimeError("killed mid-save")
  assert (final / "params").read_text() == "old"
  with workdir_lib.atomic_path(str(final)) as tmp:
    os.makedirs(tmp)
    (pathlib.Path(tmp) / "params").write_text("new")
  assert (final / "params").read_text() == "new"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_mesh_and_log_cadence_may_change_on_resume(tmp_path, data_dir, char_vocab):
  first = _config("ner", data_dir, char_vocab)
  assert not workdir_lib.check_or_record_config(str(tmp_path), first)
  second = _config("ner", data_dir, char_vocab, log_every=7, **{"mesh.fsdp": 4})
  assert workdir_lib.check_or_record_config(str(tmp_path), second)  # a resume
  recorded = json.loads((tmp_path / "config.json").read_text())
  assert recorded["log_every"] == 7 and recorded["mesh"]["fsdp"] == 4


def test_failed_model_save_leaves_no_finished_workdir_and_a_rerun_completes(
    tmp_path, data_dir, char_vocab, monkeypatch):
  from biobert_jax.trainers import model_dir

  config = _config("ner", data_dir, char_vocab, save_model=True, write_predictions=True)
  real = model_dir.native.save_native

  def failing(*args, **kwargs):
    raise OSError("disk full (injected)")

  monkeypatch.setattr(model_dir.native, "save_native", failing)
  with pytest.raises(OSError, match="injected"):
    finetune_lib.run(config, str(tmp_path), compiler_options=FAST, devices=jax.devices()[:1])
  for name in ("eval_results.json", "model", "predictions_dev.conll", "results.tmp"):
    assert not (tmp_path / name).exists(), name
  monkeypatch.setattr(model_dir.native, "save_native", real)
  # Training had finished (its last checkpoint is there): the re-run only evaluates and
  # writes, and logs no step twice.
  steps = [r["step"] for r in read_jsonl(str(tmp_path / "metrics.jsonl"))]
  finetune_lib.run(config, str(tmp_path), compiler_options=FAST, devices=jax.devices()[:1])
  assert [r["step"] for r in read_jsonl(str(tmp_path / "metrics.jsonl"))] == steps
  for name in ("eval_results.json", "model/task.json", "model/params", "predictions_dev.conll"):
    assert (tmp_path / name).exists(), name


def test_nan_stops_naming_the_step_and_saves_nothing_after_it(tmp_path, data_dir, char_vocab):
  config = _config("ner", data_dir, char_vocab, checkpoint_every=1,
                   **{"optim.learning_rate": 1e30})
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"step 2: non-finite .*last good checkpoint is step 1"):
    finetune_lib.run(config, str(tmp_path), compiler_options=FAST, devices=jax.devices()[:1])
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]
  assert not (tmp_path / "eval_results.json").exists()


def test_pretraining_rerun_with_another_model_refuses_before_writing(tmp_path, data_dir):
  sys.path.insert(0, str(REPO / "tests"))
  from _pretrain_util import tiny_run_config
  from biobert_jax.trainers import pretrain

  first = tiny_run_config(data_dir, total_steps=2)
  workdir_lib.check_or_record_config(str(tmp_path), first)
  (tmp_path / "bert_config.json").write_text('{"hidden_size": 32}\n')
  (tmp_path / "vocab.txt").write_text("[PAD]\n")
  before = _snapshot(tmp_path)
  second = tiny_run_config(data_dir, total_steps=2, hidden_size=64)
  with pytest.raises(workdir_lib.WorkdirConfigMismatch, match=r"hidden_size: 32 -> 64"):
    pretrain.train(second, str(tmp_path))
  assert _snapshot(tmp_path) == before


# ---- subprocesses: kill -9 / SIGTERM, then the same command again ---------------------------

_CHILD = """
import json, sys
from biobert_jax.trainers.recipe_steps import finetune_config
from biobert_jax.trainers import finetune
spec = json.loads(sys.argv[1])
config = finetune_config(spec.pop("task"), **spec)
finetune.run(config, sys.argv[2], compiler_options={"xla_backend_optimization_level": 0})
"""


def _resume_spec(data_dir, vocab):
  spec = _overrides("ner", data_dir, vocab)
  # 3 epochs of 2 steps with dev evaluation: best-so-far and history must survive too.
  spec.update(task="ner", max_train_examples=2, num_epochs=3, checkpoint_every=1,
              keep_checkpoints=2, save_model=True, write_predictions=True, batch_size=4,
              eval_batch_size=4)
  spec["mesh.data"] = 1
  return spec


def _start(spec, workdir):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             PYTHONPATH=str(REPO))
  return subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(spec), str(workdir)],
                          cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _run_to_end(spec, workdir):
  proc = _start(spec, workdir)
  out, _ = proc.communicate(timeout=900)
  assert proc.returncode == 0, out[-3000:]
  return out


def _run_and_signal(spec, workdir, at_step, sig):
  proc = _start(spec, workdir)
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if line.startswith("step ") and int(line.split()[1].split("/")[0]) >= at_step:
      proc.send_signal(sig)
      break
  out = "".join(lines) + proc.stdout.read()
  proc.wait(timeout=300)
  return proc.returncode, out


def _comparable(workdir):
  results = json.loads((pathlib.Path(workdir) / "eval_results.json").read_text())
  results.pop("train_seconds")
  results.pop("run_seconds")
  return results


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir, char_vocab):
  workdir = tmp_path_factory.mktemp("reference")
  spec = _resume_spec(data_dir, char_vocab)
  _run_to_end(spec, workdir)
  total = read_jsonl(str(workdir / "metrics.jsonl"))[-1]["step"]
  assert total >= 6, total  # room for a kill mid-run
  return workdir, spec, total


def _assert_same_as(workdir, reference_dir, total):
  assert _comparable(workdir) == _comparable(reference_dir)
  steps = [r["step"] for r in read_jsonl(str(workdir / "metrics.jsonl"))]
  assert steps == list(range(1, total + 1))  # no step twice, none missing
  assert _losses(workdir) == _losses(reference_dir)
  assert (pathlib.Path(workdir) / "predictions_test.conll").read_text() == (
      pathlib.Path(reference_dir) / "predictions_test.conll").read_text()


@pytest.mark.slow
def test_kill_9_then_rerun_ends_like_an_uninterrupted_run(reference, tmp_path):
  reference_dir, spec, total = reference
  kill_at = int(np.random.default_rng(2026).integers(2, total - 1))
  rc, out = _run_and_signal(spec, tmp_path, kill_at, signal.SIGKILL)
  assert rc == -signal.SIGKILL, out[-3000:]
  assert not (tmp_path / "eval_results.json").exists()
  out = _run_to_end(spec, tmp_path)
  assert "resumed from" in out
  _assert_same_as(tmp_path, reference_dir, total)


@pytest.mark.slow
def test_sigterm_saves_exits_0_and_the_rerun_continues(reference, tmp_path):
  reference_dir, spec, total = reference
  rc, out = _run_and_signal(spec, tmp_path, 2, signal.SIGTERM)
  assert rc == 0, out[-3000:]
  assert "preempted at step" in out
  saved = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert saved and saved[-1] < total
  assert not (tmp_path / "eval_results.json").exists()
  _run_to_end(spec, tmp_path)
  _assert_same_as(tmp_path, reference_dir, total)
