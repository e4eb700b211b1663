"""`config.mesh.auto`: the planner's mesh search over the 8 host devices present, the
trainers' use of it (mesh equivalence, the recorded choice, resume) and the
`--config.mesh=auto` spelling of the trainer mains."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from biobert_jax.plan import planner, search
from biobert_jax.train.metrics_writer import read_jsonl
from biobert_jax.trainers import auto_mesh, pretrain
from experiments import trainer_flags
from experiments.configs import finetune as finetune_configs
from experiments.configs import pretrain as pretrain_configs

from _pretrain_util import tiny_bert_config, tiny_run_config

REPO = pathlib.Path(__file__).resolve().parents[1]
BERT = tiny_bert_config()


def _tiny(batch_size=8, **overrides):
  c = pretrain_configs.get_config("tiny")
  c.batch_size, c.max_seq_length, c.max_predictions_per_seq = batch_size, 32, 5
  c.hidden_size, c.num_layers, c.num_heads = 32, 2, 2
  c.mesh.auto = True
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


def test_search_over_host_devices_is_valid_and_deterministic():
  devices = jax.devices()[:8]
  choices = [search.choose_mesh(_tiny(), devices, bert=BERT) for _ in range(2)]
  assert choices[0] == choices[1]
  c = choices[0]
  assert c["data"] * c["fsdp"] * c["tensor"] == 8 and 8 % (c["data"] * c["fsdp"]) == 0
  assert BERT.num_attention_heads % c["tensor"] == 0
  # Host devices: no memory limit, a neutral roofline; ties go to data parallelism.
  assert (c["data"], c["fsdp"], c["tensor"]) == (8, 1, 1)
  assert c["memory_limit"] is None and c["bytes_from"] == "analytic"
  # 2 micro-batches of 8: at most 4 batch shards, so the other 2 devices go to tensor.
  small = search.choose_mesh(_tiny(grad_accum_steps=2), devices, bert=BERT)
  assert (small["data"], small["fsdp"], small["tensor"]) == (4, 1, 2)


def test_memory_limit_compiles_the_best_and_moves_on_when_it_does_not_fit():
  devices = jax.devices()[:8]
  sizes = {}

  def fake_compile(config):  # the best mesh "needs" more than the limit
    mesh = (config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    assert config.mesh.auto is False and config.batch_size == 8
    sizes[mesh] = 2 << 30 if not sizes else 1 << 20
    return sizes[mesh]

  c = search.choose_mesh(_tiny(), devices, bert=BERT, compile_fn=fake_compile,
                         memory_limit=1 << 30)
  first, second = list(sizes)
  assert first == (8, 1, 1) and (c["data"], c["fsdp"], c["tensor"]) == second
  assert c["bytes_from"] == "compiled" and c["bytes_per_device"] == 1 << 20

  def refuse(config):
    raise planner.DoesNotFit("out of memory")

  with pytest.raises(search.NoMeshFits, match="the compiler refused the best 2"):
    search.choose_mesh(_tiny(), devices, bert=BERT, compile_fn=refuse, memory_limit=1 << 30)
  with pytest.raises(search.NoMeshFits, match="divides batch_size=3"):
    search.choose_mesh(_tiny(batch_size=3), devices, bert=BERT)


def test_finetune_search_divides_the_eval_batch_too():
  c = finetune_configs.get_config("ner")
  c.init_checkpoint, c.model_preset, c.max_seq_length = "", "tiny", 32
  c.mesh.auto = True
  got = search.choose_mesh(c, jax.devices()[:8], batch_size=8, eval_batch_size=4)
  assert 4 % (got["data"] * got["fsdp"]) == 0 and 8 % (got["data"] * got["fsdp"]) == 0


def test_a_recorded_choice_is_kept_and_a_stale_one_searched_again(tmp_path, capsys):
  devices = jax.devices()[:8]
  recorded = {"data": 2, "fsdp": 2, "tensor": 2, "devices": 8, "device_kind": "cpu",
              "estimated_step_seconds": 1e-3, "bytes_per_device": 1 << 20,
              "bytes_from": "analytic", "memory_limit": None, "searched": 7}
  (tmp_path / auto_mesh.MESH_NAME).write_text(json.dumps(recorded))
  config, choice = auto_mesh.resolve(_tiny(), str(tmp_path), devices, bert=BERT)
  assert choice["source"] == "recorded"
  assert (config.mesh.data, config.mesh.fsdp, config.mesh.tensor) == (2, 2, 2)
  assert "mesh auto (recorded): data=2 fsdp=2 tensor=2" in capsys.readouterr().out
  # Four devices now: the record does not fit them, the search runs.
  config, choice = auto_mesh.resolve(_tiny(), str(tmp_path), devices[:4], bert=BERT)
  assert choice["source"] == "searched" and config.mesh.data == 4
  # Not auto: untouched.
  plain = _tiny()
  plain.mesh.auto = False
  assert auto_mesh.resolve(plain, str(tmp_path), devices, bert=BERT) == (plain, None)


def _losses(workdir):
  return [r["loss"] for r in read_jsonl(str(workdir / "metrics.jsonl"))]


def test_pretraining_on_auto_equals_the_explicit_mesh_and_resumes_on_it(
    data_dir, tmp_path, capsys):
  """Auto picks (8, 1, 1) here; the same run given that mesh has the same losses; a
  re-run in the workdir takes the recorded mesh."""
  run = {"total_steps": 3, "mesh.auto": True, "async_checkpoints": False}
  pretrain.train(tiny_run_config(data_dir, **run), str(tmp_path / "auto"))
  out = capsys.readouterr().out
  lines = [l for l in out.splitlines() if l.startswith("mesh auto")]
  assert len(lines) == 1 and "(searched): data=8 fsdp=1 tensor=1 on 8 cpu" in lines[0]
  chosen = json.loads((tmp_path / "auto" / auto_mesh.MESH_NAME).read_text())
  assert (chosen["data"], chosen["fsdp"], chosen["tensor"]) == (8, 1, 1)
  recorded_config = json.loads((tmp_path / "auto" / "config.json").read_text())
  assert recorded_config["mesh"] == {"auto": True, "data": 8, "fsdp": 1, "tensor": 1}

  explicit = {"total_steps": 3, "mesh.data": 8, "mesh.fsdp": 1, "mesh.tensor": 1,
              "async_checkpoints": False}
  pretrain.train(tiny_run_config(data_dir, **explicit), str(tmp_path / "explicit"))
  assert "mesh auto" not in capsys.readouterr().out
  auto_losses = _losses(tmp_path / "auto")
  assert len(auto_losses) == 3 and np.all(np.isfinite(auto_losses))
  np.testing.assert_allclose(auto_losses, _losses(tmp_path / "explicit"), rtol=1e-5)

  pretrain.train(tiny_run_config(data_dir, **dict(run, total_steps=4)),
                 str(tmp_path / "auto"))
  out = capsys.readouterr().out
  assert "mesh auto (recorded): data=8 fsdp=1 tensor=1" in out
  assert [r["step"] for r in read_jsonl(str(tmp_path / "auto" / "metrics.jsonl"))] == [
      1, 2, 3, 4]


def test_flags_parser_rewrites_auto_and_rejects_other_values():
  assert trainer_flags.rewrite(["prog", "--config.mesh=auto", "--workdir=w"]) == [
      "prog", "--config.mesh.auto=true", "--workdir=w"]
  assert trainer_flags.rewrite(["prog", "--config.mesh", "auto"]) == [
      "prog", "--config.mesh.auto=true"]
  kept = ["prog", "--config.mesh.data=2", "--config.mesh.auto=true", "--", "--config.mesh=x"]
  assert trainer_flags.rewrite(kept) == kept
  with pytest.raises(trainer_flags.MeshFlagError, match="--config.mesh='bogus'"):
    trainer_flags.rewrite(["prog", "--config.mesh=bogus"])


_MAIN = textwrap.dedent("""
    from absl import app
    from ml_collections import config_flags
    from experiments import trainer_flags
    _CONFIG = config_flags.DEFINE_config_file("config", None, "", lock_config=True)
    def main(argv):
      m = _CONFIG.value.mesh
      print("mesh", m.auto, m.data, m.fsdp, m.tensor)
    app.run(main, flags_parser=trainer_flags.parse_flags)
""")


@pytest.mark.parametrize("flag,expected", [
    ("--config.mesh=auto", "mesh True 1 -1 1"),
    ("--config.mesh.auto=true", "mesh True 1 -1 1"),
    ("--config.mesh=bogus", None),
])
def test_the_spelling_reaches_the_config_through_absl(flag, expected):
  proc = subprocess.run(
      [sys.executable, "-c", _MAIN, "--config=experiments/configs/pretrain.py:tiny", flag],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  if expected is not None:
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == expected
  else:
    assert proc.returncode == 1
    errors = [l for l in proc.stderr.splitlines() if "--config.mesh" in l]
    assert len(errors) == 1 and "--config.mesh='bogus'" in errors[0]
    assert "--config.mesh=auto" in errors[0] and "--config.mesh.auto=true" in errors[0]


def test_mains_use_the_shared_parser():
  for main in ("pretrain", "finetune"):
    text = (REPO / "experiments" / f"{main}.py").read_text()
    assert "flags_parser=trainer_flags.parse_flags" in text, main



@pytest.mark.slow  # two tiny NER fine-tunings: ~15 s with a warm compile cache, more cold
def test_finetuning_on_auto_equals_the_explicit_mesh(data_dir, tmp_path, capsys):
  from biobert_jax.configs.overrides import apply_overrides
  from biobert_jax.trainers import finetune as finetune_lib
  chars = "abcdefghijklmnopqrstuvwxyz0123456789.,;:()[]-/'\"%+=<>?!&*_"
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars,
                              *(f"##{c}" for c in chars)]) + "\n")
  common = {"init_checkpoint": "", "model_preset": "tiny", "vocab_path": str(vocab),
            "lowercase": 1, "batch_size": 8, "eval_batch_size": 4, "log_every": 1,
            "optim.learning_rate": 1e-3, "optim.warmup_proportion": 0.0, "save_model": False,
            "write_predictions": False, "tensorboard": False,
            "data_dir": str(data_dir / "ner/NCBI-disease"), "max_train_examples": 5,
            "max_eval_examples": 2, "max_seq_length": 32, "doc_stride": 16,
            "num_epochs": 1}
  fast = {"xla_backend_optimization_level": 0}
  auto = apply_overrides(finetune_configs.get_config("ner"), {**common, "mesh.auto": True})
  finetune_lib.run(auto, str(tmp_path / "auto"), compiler_options=fast)
  line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("mesh auto")]
  chosen = json.loads((tmp_path / "auto" / auto_mesh.MESH_NAME).read_text())
  mesh = (chosen["data"], chosen["fsdp"], chosen["tensor"])
  assert len(line) == 1 and 4 % (mesh[0] * mesh[1]) == 0 and np.prod(mesh) == 8
  explicit = apply_overrides(finetune_configs.get_config("ner"), {
      **common, "mesh.data": mesh[0], "mesh.fsdp": mesh[1], "mesh.tensor": mesh[2]})
  finetune_lib.run(explicit, str(tmp_path / "explicit"), compiler_options=fast)
  np.testing.assert_allclose(_losses(tmp_path / "auto"), _losses(tmp_path / "explicit"),
                             rtol=1e-5)
