"""The wheel: builds, installs into a fresh venv, and its console scripts run outside the checkout."""  # noqa: E501
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import jax
import pytest

from biobert_jax.checkpoints import native
from biobert_jax.config import BertConfig
from biobert_jax.models import BertForPreTraining, init_params

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ("biobert_jax", "data_pipeline", "experiments", "setup.cfg", "pyproject.toml",
           "README.md")


def _run(cmd, **kw):
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
  assert out.returncode == 0, f"{cmd} failed:\n{out.stdout}\n{out.stderr}"
  return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> pathlib.Path:
  """A fresh venv holding only the wheel; dependencies come from the test venv."""
  tmp = tmp_path_factory.mktemp("wheel")
  src = tmp / "src"
  src.mkdir()
  for name in SOURCES:  # build from a copy: no build/ or egg-info in the checkout
    if (ROOT / name).is_dir():
      shutil.copytree(ROOT / name, src / name,
                      ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
      shutil.copy(ROOT / name, src / name)
  _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", str(tmp / "dist"), str(src)])
  (wheel,) = (tmp / "dist").glob("biobert_jax-*.whl")
  venv = tmp / "venv"
  _run([sys.executable, "-m", "venv", str(venv)])
  purelib = pathlib.Path(subprocess.check_output(
      [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
      text=True).strip())
  # A path line (not a site dir): the test venv's packages without its editable install.
  (purelib / "_test_venv_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
  _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index",
        str(wheel)])
  return venv


def _clean_env(**extra) -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "BIOBERT_DATA_DIR", "VIRTUAL_ENV")}
  env.update(extra)
  return env


@pytest.mark.slow
def test_console_script_runs_from_installed_wheel(installed, tmp_path):
  config = BertConfig.preset("tiny")
  native.save_native(config, init_params(BertForPreTraining(config), jax.random.key(0)),
                     tmp_path / "native")

  outside = tmp_path / "elsewhere"
  outside.mkdir()
  where = _run([installed / "bin" / "python", "-c", "import biobert_jax; print(biobert_jax.__file__)"],  # noqa: E501
               cwd=outside, env=_clean_env()).stdout
  assert str(installed) in where, where

  _run([installed / "bin" / "biobert-jax-convert", f"--input={tmp_path / 'native'}",
        f"--output={tmp_path / 'hf'}", "--format=hf"], cwd=outside, env=_clean_env())
  assert (tmp_path / "hf" / "config.json").is_file()
  assert (tmp_path / "hf" / "model.safetensors").is_file()

  usage = _run([installed / "bin" / "biobert-jax", "--help"], cwd=outside, env=_clean_env())
  assert "convert" in usage.stdout and "plan" in usage.stdout


@pytest.mark.slow
def test_installed_wheel_names_the_missing_data_dir(installed, tmp_path):
  out = subprocess.run(
      [installed / "bin" / "python", "-c",
       "from data_pipeline import paths; paths.data_dir()"],
      capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), timeout=120)
  assert out.returncode != 0
  assert "BIOBERT_DATA_DIR" in out.stderr.strip().splitlines()[-1]
  ok = subprocess.run(
      [installed / "bin" / "python", "-c",
       "from data_pipeline import paths; print(paths.data_dir())"],
      capture_output=True, text=True, cwd=tmp_path, timeout=120,
      env=_clean_env(BIOBERT_DATA_DIR=str(tmp_path)))
  assert ok.returncode == 0 and ok.stdout.strip() == str(tmp_path.resolve())
