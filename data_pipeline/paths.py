"""Where the shared benchmark data lives: `$BIOBERT_DATA_DIR`, else a checkout's `../shared/data`."""  # noqa: E501
import os
import pathlib

from etils import epath

from biobert_jax import fs

_SOURCE_ROOT = pathlib.Path(__file__).resolve().parent.parent


class DataDirError(FileNotFoundError):
  """No benchmark data folder could be located."""


def _checkout_default() -> pathlib.Path | None:
  # Only a source checkout (setup.cfg beside the packages) has a meaningful sibling
  # `shared/data`; from an installed wheel the parent folder is site-packages.
  if not (_SOURCE_ROOT / "setup.cfg").is_file():
    return None
  return (_SOURCE_ROOT.parent / "shared" / "data").resolve()


def data_dir() -> pathlib.Path | epath.Path:
  """The data folder (a gs:// URL stays one); raises DataDirError with the fix when none is
  set or found."""
  env = os.environ.get("BIOBERT_DATA_DIR")
  if env:
    return fs.path(env) if fs.is_remote(env) else pathlib.Path(env).expanduser().resolve()
  default = _checkout_default()
  if default is None:
    raise DataDirError(
        "no benchmark data folder: set BIOBERT_DATA_DIR to the folder holding ner/, re/, "
        "qa/, pretrain/ and vocab/, or pass the data paths explicitly")
  return default


def data_path(*parts: str) -> pathlib.Path | epath.Path:
  return data_dir().joinpath(*parts)
