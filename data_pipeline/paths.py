"""Where the shared data lives: `$BIOBERT_DATA_DIR`, else `../shared/data` next to the
repository root.
"""
import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def data_dir() -> pathlib.Path:
  env = os.environ.get("BIOBERT_DATA_DIR")
  if env:
    return pathlib.Path(env).expanduser().resolve()
  return (REPO_ROOT.parent / "shared" / "data").resolve()


def data_path(*parts: str) -> pathlib.Path:
  return data_dir().joinpath(*parts)
