"""Where the shared benchmark data lives.

`$BIOBERT_DATA_DIR` wins; otherwise `../shared/data` next to the repository root, which is
where the workplace (and CI) puts it.
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
