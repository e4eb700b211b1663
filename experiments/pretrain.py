r"""BERT/BioBERT pre-training (masked LM + next sentence) on a device mesh.

  python -m experiments.pretrain --config=experiments/configs/pretrain.py:tiny \
      --workdir=work/pretrain_tiny --config.total_steps=200 --config.mesh.fsdp=-1

Re-running the same command on the same workdir resumes from its latest checkpoint
(params, optimizer state, rng, step and the data iterator's position). A re-run whose
config differs from the workdir's config.json (other than total_steps, the mesh and
logging/checkpoint cadence) stops before writing anything and lists the differing keys;
--config.overwrite=True deletes the old run and starts afresh. Multi-host: start
the same command on every host with --coordinator_address=HOST:PORT --num_processes=N
--process_id=i, or --jax_distributed where jax detects them (TPU pods, SLURM).
Progress lines count NON-PAD tokens per second (input_mask), over the global batch.

Workdir: bert_config.json, vocab.txt, checkpoints/<step>/, metrics.jsonl,
eval_metrics.jsonl, tensorboard/, and at the end export/ (bert_config.json + params/ +
vocab.txt), which experiments/finetune.py takes as --config.init_checkpoint.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from biobert_jax import runtime
from biobert_jax.distributed import initialize_distributed
from biobert_jax.trainers.pretrain import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Pre-training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumed if it exists).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (multi-host without a TPU).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_AUTO_DISTRIBUTED = flags.DEFINE_bool(
    "jax_distributed", False,
    "Call jax.distributed.initialize() with auto-detected arguments (TPU pods, SLURM, "
    "Open MPI) even without --coordinator_address.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO.
  runtime.setup_process()  # CPU: host allocator settings; all: compile cache
  initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                         _AUTO_DISTRIBUTED.value)
  result = train(_CONFIG.value, _WORKDIR.value)
  if result.preempted:
    print(f"preempted at step {result.final_step}: checkpoint saved, exiting cleanly",
          flush=True)
  sys.stdout.flush()


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
