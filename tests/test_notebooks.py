"""The ablation notebooks run headless at tiny scale, so they never rot.

Each notebook reads BIOBERT_NOTEBOOK_SCALE / BIOBERT_NOTEBOOK_WORKDIR from the environment
(its first cell); the kernel inherits the environment of this process.
"""
import json
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "notebooks"


def _run(name: str, workdir: pathlib.Path, monkeypatch) -> nbformat.NotebookNode:
  monkeypatch.setenv("BIOBERT_NOTEBOOK_SCALE", "tiny")
  monkeypatch.setenv("BIOBERT_NOTEBOOK_WORKDIR", str(workdir))
  # One CPU device in the kernel: the notebooks are single-device recipes.
  monkeypatch.setenv("XLA_FLAGS", "")
  nb = nbformat.read(NOTEBOOKS / name, as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
  return nb


@pytest.mark.slow
def test_pretraining_budget_notebook(tmp_path, monkeypatch, data_dir):
  _run("01_pretraining_budget.ipynb", tmp_path, monkeypatch)
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results) == {"0", "20"}
  for r in results.values():
    assert 0.0 <= r["test_f1"] <= 1.0
  assert (tmp_path / "f1_vs_pretraining.png").stat().st_size > 1000


@pytest.mark.slow
def test_vocab_ablation_notebook(tmp_path, monkeypatch, data_dir):
  _run("02_vocab_ablation.ipynb", tmp_path, monkeypatch)
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results) == {"bert_cased", "pubmed_wordpiece"}
  for r in results.values():
    assert r["pieces_per_word"] >= 1.0
    assert 0.0 <= r["test_f1"] <= 1.0


@pytest.mark.slow
def test_tag_raw_text_notebook(tmp_path, monkeypatch, data_dir):
  nb = _run("03_tag_raw_text.ipynb", tmp_path, monkeypatch)
  entities = json.loads((tmp_path / "entities.json").read_text())
  assert len(entities) == 2
  # The last cell renders the highlighted text as HTML.
  assert any("text/html" in o.get("data", {}) for o in nb.cells[-1].outputs)
