"""The layering rules: the core imports no TensorFlow and no data_pipeline.

Each check runs in a fresh interpreter, since this pytest process has TF loaded already.
"""
import subprocess
import sys

import pytest

CORE = ["biobert_jax", "biobert_jax.models", "biobert_jax.checkpoints",
        "biobert_jax.checkpoints.surgery", "biobert_jax.train", "biobert_jax.train.loop",
        "biobert_jax.train.step", "biobert_jax.train.state", "biobert_jax.train.optim",
        "biobert_jax.train.metrics_writer", "biobert_jax.metrics", "biobert_jax.sharding",
        "biobert_jax.tree"]


@pytest.mark.parametrize("module", CORE)
def test_core_imports_no_tensorflow(module):
  code = (f"import sys, importlib; importlib.import_module({module!r}); "
          "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'tensorflow_text', 'data_pipeline', 'experiments')); "
          "print(bad); sys.exit(1 if bad else 0)")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, f"{module} loads {proc.stdout.strip()} {proc.stderr[-2000:]}"


def test_data_pipeline_does_not_import_the_library():
  code = ("import sys, data_pipeline.tokenization, data_pipeline.pretraining, "
          "data_pipeline.tasks.ner, data_pipeline.corpora; "
          "bad = sorted(m for m in sys.modules if m.startswith('biobert_jax') and "
          "m not in ('biobert_jax', 'biobert_jax.config')); print(bad); "
          "sys.exit(1 if bad else 0)")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, f"data_pipeline loads {proc.stdout.strip()} {proc.stderr[-2000:]}"
