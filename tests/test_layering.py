"""The layering rules: the core imports no TensorFlow and no data_pipeline.

The checks run in a fresh interpreter, since this pytest process has TF loaded already.
"""
import subprocess
import sys

CORE = ["biobert_jax", "biobert_jax.tree", "biobert_jax.config", "biobert_jax.models",
        "biobert_jax.sharding", "biobert_jax.checkpoints", "biobert_jax.checkpoints.surgery",
        "biobert_jax.checkpoints.manager", "biobert_jax.checkpoints.native",
        "biobert_jax.train", "biobert_jax.train.loop", "biobert_jax.train.step",
        "biobert_jax.train.state", "biobert_jax.train.optim",
        "biobert_jax.train.metrics_writer", "biobert_jax.metrics", "biobert_jax.metrics.ner",
        "biobert_jax.metrics.re", "biobert_jax.metrics.bioasq",
        "biobert_jax.metrics.qa_decoding", "biobert_jax.runtime",
        "biobert_jax.runtime.ahead", "biobert_jax.plan.planner", "biobert_jax.plan.search"]
FORBIDDEN = ("tensorflow", "tensorflow_text", "tensorflow_datasets", "data_pipeline",
             "experiments")

_PROBE = """
import importlib, sys
for name in sys.argv[1:]:
  importlib.import_module(name)
  bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({forbidden!r}))
  if bad:
    print(name, 'loads', bad); sys.exit(1)
"""


def _probe(modules, forbidden):
  code = _PROBE.format(forbidden=forbidden)
  return subprocess.run([sys.executable, "-c", code, *modules], capture_output=True,
                        text=True, timeout=300, check=False)


def test_core_imports_no_tensorflow_nor_data_pipeline():
  proc = _probe(CORE, FORBIDDEN)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_the_probe_can_fail():
  # A module that is forbidden to itself: fails without paying TensorFlow's import time.
  proc = _probe(["json"], ("json",))
  assert proc.returncode == 1 and "json loads ['json']" in proc.stdout


def test_data_pipeline_does_not_import_the_library():
  modules = ["data_pipeline.tokenization", "data_pipeline.pretraining",
             "data_pipeline.tasks.ner", "data_pipeline.corpora"]
  code = ("import importlib, sys\n"
          "for name in sys.argv[1:]: importlib.import_module(name)\n"
          "bad = sorted(m for m in sys.modules if m.startswith('biobert_jax') and "
          "m not in ('biobert_jax', 'biobert_jax.config'))\n"
          "print(bad); sys.exit(1 if bad else 0)\n")
  proc = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True,
                        text=True, timeout=300, check=False)
  assert proc.returncode == 0, f"data_pipeline loads {proc.stdout.strip()} {proc.stderr[-2000:]}"


# What the accelerator image lacks (experiments/benchmarks/device_check.sh): annotation and
# the Python tokenizer face must load without them; TensorFlow only for the in-graph face.
GPU_IMAGE_LACKS = ("tensorflow", "tensorflow_text", "tensorflow_datasets", "ml_collections")


def test_annotate_and_python_tokenizer_load_without_tensorflow():
  proc = _probe(["data_pipeline.tokenization", "biobert_jax.trainers.model_dir",
                 "biobert_jax.trainers.annotate", "experiments.annotate",
                 "biobert_jax.distributed"], GPU_IMAGE_LACKS)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
