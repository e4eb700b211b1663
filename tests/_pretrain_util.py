"""Shared helpers of the pre-training tests: a tiny model, synthetic batches, launcher runs."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np

from biobert_jax.config import BertConfig
from biobert_jax.configs.overrides import apply_overrides

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_MODEL = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64)


def write_corpus(data_dir: Any, root: Any, num_docs: int, num_files: int) -> Any:
  """The first `num_docs` shared PubMed abstracts, one per line, dealt over
  `root`/part-{0..num_files-1}.txt; returns root."""
  lines = (data_dir / "pretrain/pubmed_abstracts.txt").read_text("utf-8").splitlines()
  for f in range(num_files):
    (root / f"part-{f}.txt").write_text("\n".join(lines[f:num_docs:num_files]) + "\n")
  return root


def small_pipeline_config(corpus: Any, **overrides: Any) -> Any:
  """The dynamic pipeline's config over `corpus`/part-*.txt, sized for tests (length 64,
  batch 8, small pools); `overrides` set any key (vocab_path, num_workers, ...)."""
  from data_pipeline import pretraining  # TensorFlow: only the pipeline tests pay for it
  c = pretraining.default_config()
  c.train_files = str(os.path.join(corpus, "part-*.txt"))
  c.max_seq_length = 64
  c.max_predictions_per_seq = 12
  c.batch_size = 8
  c.shuffle_buffer = 64
  c.doc_pool_size = 64
  c.block_docs = 16
  c.holdout_every = 0
  for key, value in overrides.items():
    setattr(c, key, value)
  return c


def tiny_bert_config(**overrides: Any) -> BertConfig:
  return BertConfig(**{**TINY_MODEL, **overrides})


def synthetic_batch(seed: int, batch_size: int = 8, seq_len: int = 32, num_predictions: int = 5,
                    vocab_size: int = 300) -> dict[str, np.ndarray]:
  """A BERT batch with padding, partial prediction weights and both NSP labels."""
  from biobert_jax.trainers.pretrain_data import SyntheticBatches
  return SyntheticBatches(batch_size=batch_size, seq_len=seq_len,
                          num_predictions=num_predictions, vocab_size=vocab_size,
                          seed=seed).batch(0)


# Launcher overrides for a tiny synthetic-data run (CPU seconds per step).
TINY_RUN = {
    "data_source": "synthetic", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
    "batch_size": 8, "max_seq_length": 32, "max_predictions_per_seq": 5,
    "optim.learning_rate": 1e-3, "optim.warmup_steps": 2, "log_every": 1, "checkpoint_every": 1,
    "keep_checkpoints": 2, "eval_steps": 0, "tensorboard": False,
    "mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2,
}


def tiny_run_config(data_dir, **overrides: Any):
  """experiments/configs/pretrain.py:tiny with TINY_RUN and `overrides` applied."""
  from experiments.configs import pretrain as pretrain_configs
  config = pretrain_configs.get_config("tiny")
  config.vocab_path = str(data_dir / "vocab" / "bert-base-cased-vocab.txt")
  return apply_overrides(config, {**TINY_RUN, **overrides})


def launcher_args(data_dir, workdir, **overrides: Any) -> list[str]:
  args = [sys.executable, "-m", "experiments.pretrain",
          "--config=experiments/configs/pretrain.py:tiny", f"--workdir={workdir}",
          f"--config.vocab_path={data_dir / 'vocab' / 'bert-base-cased-vocab.txt'}"]
  for key, value in {**TINY_RUN, **overrides}.items():
    args.append(f"--config.{key}={value}")
  return args


def child_env(num_devices: int = 8, cache_dir=None) -> dict[str, str]:
  """Environment of a child JAX process with `num_devices` CPU devices.

  Children of one test share a persistent compilation cache (`cache_dir`) and compile
  at XLA backend optimisation level 0: the restarts of a resume test then load the
  compiled step instead of compiling it again (CI time). Every child of a comparison
  uses the same flags, so their numerics are identical.
  """
  env = dict(os.environ)
  env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={num_devices} "
                      "--xla_backend_optimization_level=0")
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONUNBUFFERED"] = "1"
  if cache_dir is not None:
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  return env


def start_launcher(data_dir, workdir, *, num_devices: int = 8, extra: list[str] = (),
                   cache_dir=None, **overrides: Any) -> subprocess.Popen:
  return subprocess.Popen(launcher_args(data_dir, workdir, **overrides) + list(extra),
                          cwd=REPO, env=child_env(num_devices, cache_dir),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_launcher(data_dir, workdir, *, timeout: float = 300, **kwargs: Any) -> str:
  """Runs the launcher to completion; returns its output; fails with the output's tail."""
  proc = start_launcher(data_dir, workdir, **kwargs)
  out, _ = proc.communicate(timeout=timeout)
  if proc.returncode != 0:
    raise AssertionError(f"launcher exited {proc.returncode}:\n{out[-4000:]}")
  return out


def params_of(export_dir) -> Any:
  from biobert_jax.checkpoints import native
  return native.load_native(export_dir)[1]
