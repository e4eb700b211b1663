"""The main job's orchestration at a tiny scale: both arms, the table, summary and plot."""
import json

import pytest

from experiments import main_job


@pytest.mark.slow
def test_main_job_runs_both_arms_and_reports_the_gap(tmp_path, data_dir):
  settings = dict(main_job.QUICK, pretrain_steps=6, pretrain_batch_size=8,
                  max_train_examples=40, max_eval_examples=24)
  summary = main_job.run(str(tmp_path), settings, seeds=[0, 1], corpus="NCBI-disease")

  assert [r["seed"] for r in summary["runs"]["pretrained"]] == [0, 1]
  assert [r["seed"] for r in summary["runs"]["random_init"]] == [0, 1]
  pre = [r["test"]["f1"] for r in summary["runs"]["pretrained"]]
  rnd = [r["test"]["f1"] for r in summary["runs"]["random_init"]]
  assert summary["gap"]["per_seed"] == pytest.approx([a - b for a, b in zip(pre, rnd)])
  assert summary["pretraining"]["steps"] == 6
  assert (tmp_path / "curves.png").stat().st_size > 1000
  on_disk = json.loads((tmp_path / "summary.json").read_text())
  assert on_disk["gap"]["mean_gap"] == pytest.approx(summary["gap"]["mean_gap"])
  # Each arm's numbers come from its own eval_results.json.
  for run in summary["runs"]["pretrained"] + summary["runs"]["random_init"]:
    results = json.loads((tmp_path / run["workdir"].split("/")[-1] / "eval_results.json")
                         .read_text())
    assert results["test"]["f1"] == pytest.approx(run["test"]["f1"])
  table = main_job.format_table(summary)
  assert "pretrained" in table and "random_init" in table and "gap" in table
