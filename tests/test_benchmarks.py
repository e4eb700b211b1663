"""Every benchmark runs: one short step of each on a tiny model, so none rots unseen.

The benchmarks print figures (no pass/fail); these tests only check that each main (or,
for the ones that spawn one subprocess per thread setting, its measuring function) runs
to the end on the tiniest inputs and reports what it promises. Compiles dominate: all but
the fine-tuning step and the config refusal are `slow` (CI runs them). The mains define
absl flags with clashing names (--steps, --batch_size, ...), so `_main` imports each
module with its flags, parses the test's argv, and removes both again afterwards.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import sys

import jax
import numpy as np
import pytest
from absl import flags

from biobert_jax import checkpoints, models
from biobert_jax.config import BertConfig
from biobert_jax.runtime import ahead
from experiments.benchmarks import common

FAST_HOST_MEMORY = "biobert_jax.runtime.host_memory.keep_host_buffers"


@contextlib.contextmanager
def _main(module_name: str, *args: str):
  """The benchmark module, its flags parsed from `args`; afterwards the flags it (and the
  benchmark modules it imported) defined are deleted and those modules unloaded."""
  flag_names, modules = set(flags.FLAGS), set(sys.modules)
  was_parsed = flags.FLAGS.is_parsed()
  module = importlib.import_module(module_name)
  argv, sys.argv = sys.argv, ["benchmark", *args]  # config_flags reads overrides there
  try:
    flags.FLAGS.unparse_flags()
    flags.FLAGS(sys.argv)
    yield module
  finally:
    sys.argv = argv
    flags.FLAGS.unparse_flags()
    for name in set(flags.FLAGS) - flag_names:
      delattr(flags.FLAGS, name)
    for name in set(sys.modules) - modules:
      if name.startswith("experiments.benchmarks."):
        del sys.modules[name]  # and from its package, or `from ... import` finds it there
        parent, _, child = name.rpartition(".")
        if hasattr(sys.modules.get(parent), child):
          delattr(sys.modules[parent], child)
    if was_parsed:
      flags.FLAGS.mark_as_parsed()


@pytest.fixture(autouse=True)
def _small(monkeypatch):
  monkeypatch.setattr(FAST_HOST_MEMORY, lambda: None)  # mains tune malloc; not here
  peak = common.measured_matmul_peak
  monkeypatch.setattr(common, "measured_matmul_peak",  # a 2048^2 matmul costs seconds
                      lambda n=0, repeats=0, dtype=np.float32: peak(256, 1, dtype))


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory, minilm_dir):
  """A tiny random BERT as a HF directory (both sides load it) with MiniLM's vocabulary."""
  vocab = (minilm_dir / "vocab.txt").read_text(encoding="utf-8")
  config = BertConfig.preset("tiny", vocab_size=len(vocab.splitlines()), hidden_size=32,
                             num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=64)
  params = models.init_params(models.BertEncoder(config), jax.random.key(0))
  out = tmp_path_factory.mktemp("tiny_hf")
  checkpoints.export_hf(config, {"encoder": jax.device_get(params)}, out)
  (out / "vocab.txt").write_text(vocab, encoding="utf-8")
  return out


def _rows(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_finetune_step_times_the_trainers_step_beside_torch(tiny_hf, tmp_path):
  out = tmp_path / "rows.jsonl"
  with _main("experiments.benchmarks.finetune_step", f"--checkpoint={tiny_hf}",
             "--seq_lens=16", "--dtypes=float32", "--batch_size=2", "--steps=1",
             "--rounds=1", f"--output={out}") as bench:
    step = bench.ours(str(tiny_hf), 3, np.float32)[1]
    bench.main([])
  assert isinstance(step, ahead.SplitTrainStep)  # the trainer's two programs
  rows = _rows(out)
  assert [r["impl"] for r in rows] == ["biobert_jax", "transformers_torch"]
  assert rows[0]["ratio_vs_torch"] > 0 and all(r["step_ms"] > 0 for r in rows)


@pytest.mark.slow
def test_xla_flags_compiles_each_variant_of_the_trainers_step(tiny_hf, tmp_path, capsys):
  out = tmp_path / "rows.jsonl"
  with _main("experiments.benchmarks.xla_flags", f"--checkpoint={tiny_hf}", "--seq_lens=16",
             "--batch_size=2", "--steps=1", "--rounds=1", "--nopeer", f"--output={out}",
             "--variants=default;xla_cpu_experimental_ynn_fusion_type=") as bench:
    bench.main([])
  rows = _rows(out)
  assert {(r["kind"], r["variant"]) for r in rows} == {
      (k, v) for k in ("step", "forward")
      for v in ("default", "xla_cpu_experimental_ynn_fusion_type=")}
  assert all(r["max_abs_diff_vs_default"] < 1e-4 for r in rows if r["kind"] == "forward")
  assert "compiled step default" in capsys.readouterr().out


@pytest.mark.slow
def test_split_step_compares_one_program_with_the_trainers_split(tiny_hf, capsys):
  with _main("experiments.benchmarks.split_step", f"--checkpoint={tiny_hf}",
             "--seq_lens=8,16", "--batch_size=2", "--rounds=2") as bench:
    bench.main([])
  printed = capsys.readouterr().out
  assert "split/one" in printed
  diff = float(printed.split("largest parameter difference after the same steps:")[1])
  assert diff < 1e-4


@pytest.mark.slow
def test_train_step_times_pretraining_beside_transformers_flax(tmp_path):
  out = tmp_path / "rows.jsonl"
  with _main("experiments.benchmarks.train_step", "--sizes=tiny", "--seq_lens=16",
             "--batch_size=2", "--steps=1", "--rounds=1", f"--output={out}") as bench:
    bench.main([])
  rows = _rows(out)
  assert [r["impl"] for r in rows] == ["biobert_jax", "transformers_flax"]
  assert rows[0]["speedup_vs_peer"] > 0


@pytest.mark.slow
def test_device_check_small_runs_every_section(tmp_path):
  """The GPU script's CPU dry run (--small): parity, steps, predict, annotate vs the
  transformers pipeline (benchmarks/annotate.compare)."""
  out = tmp_path / "device_check.json"
  with _main("experiments.benchmarks.device_check", "--small", "--steps=1",
             f"--out={out}", "--budget_s=3000") as bench:
    bench.main([])
  result = json.loads(out.read_text())
  errors = {k: v["error"] for k, v in result.items() if isinstance(v, dict) and "error" in v}
  assert not errors, errors
  assert result["parity"]["ok"]
  assert all(r["step_ms"] > 0 for r in result["finetune"] + result["pretrain"])
  assert all(r["sequences_per_sec"] > 0 for r in result["predict"])
  assert all(r.get("ours_docs_per_sec", 1) > 0 for r in result["annotate"].values())


@pytest.mark.slow
def test_qa_eval_memory_evaluates_one_bioasq_batch(data_dir, capsys):
  with _main("experiments.benchmarks.qa_eval_memory", "--batches=1", "--max_seq_length=64",
             "--eval_batch_size=64") as bench:
    bench.main([])
  assert "PEAK RSS" in capsys.readouterr().out


@pytest.mark.slow
def test_tokenize_measures_every_face(data_dir, testdata):
  with _main("experiments.benchmarks.tokenize", "--repeats=1", "--batch=8",
             f"--text={testdata / 'pt_sentences.txt'}") as bench:
    result = bench._measure(0)  # all cores: this process's TF threads are set already
  for vocab in ("cased", "uncased"):
    row = result[vocab]
    assert row["tokens"] > 0 and all(v > 0 for v in row.values())


@pytest.mark.slow
def test_pipeline_measures_dynamic_and_static_input(data_dir, testdata):
  with _main("experiments.benchmarks.pipeline", "--batches=1", "--batch_size=4",
             "--max_seq_length=32", "--workers=1",
             f"--text={testdata / 'pt_sentences.txt'}") as bench:
    result = bench._measure(0)
  for key in ("dynamic_ex_s", "dynamic_wwm_ex_s", "static_ex_s", "xml_docs_s"):
    assert result[key] > 0, key


_TINY_FINETUNE = ("--config.init_checkpoint=", "--config.model_preset=tiny",
                  "--same_init", "--config.num_epochs=1", "--config.batch_size=4",
                  "--config.eval_batch_size=8", "--threads=1")


@pytest.mark.slow
@pytest.mark.parametrize("task,extra", [
    ("ner", ("--config.max_train_examples=8", "--config.max_eval_examples=8",
             "--config.max_seq_length=32")),
    ("re", ("--config.re.corpus=gad", "--config.max_train_examples=8",
            "--config.max_eval_examples=8", "--config.max_seq_length=32")),
    ("qa", ("--config.max_train_examples=2", "--config.max_eval_examples=2",
            "--config.max_seq_length=64", "--config.doc_stride=32",
            "--config.qa.max_query_length=16",
            "--config.qa.test_files=('BioASQ-test-factoid-6b-1.json',)",
            "--config.qa.golden_files=('6B1_golden.json',)")),
])
def test_reference_trains_and_scores_with_our_metric(task, extra, data_dir, minilm_dir,
                                                     tmp_path):
  out = tmp_path / "row.json"
  with _main(f"experiments.benchmarks.{task}_reference",
             f"--config=experiments/configs/finetune.py:{task}",
             f"--config.vocab_path={minilm_dir / 'vocab.txt'}", *_TINY_FINETUNE, *extra,
             f"--out={out}") as bench:
    bench.main([])
  row = json.loads(out.read_text())
  assert row["task"].startswith(task) and 0.0 <= row["reference"] <= 1.0
  assert row["reference_seconds"] > 0


def test_reference_refuses_another_tasks_config(minilm_dir):
  with _main("experiments.benchmarks.re_reference",
             "--config=experiments/configs/finetune.py:ner") as bench:
    with pytest.raises(Exception, match="re_reference needs the :re config"):
      bench.main([])
