r"""BERT/BioBERT pre-training (masked LM + next sentence) on a device mesh; resumes on re-run.

  python -m experiments.pretrain --config=experiments/configs/pretrain.py:tiny \
      --workdir=work/pretrain_tiny --config.total_steps=200
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from biobert_jax import locking, runtime
from biobert_jax.checkpoints.convert import CheckpointError
from biobert_jax.checkpoints.manager import CheckpointMismatchError
from biobert_jax.distributed import initialize_distributed
from biobert_jax.trainers.pretrain import train
from experiments import trainer_flags

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
  try:
    result = train(_CONFIG.value, _WORKDIR.value)
  except (locking.LockHeld, CheckpointError, CheckpointMismatchError) as e:
    # another run writes there, or its checkpoints do not fit: one line, exit status 1
    sys.exit(f"error: {e}")
  if result.preempted:
    print(f"preempted at step {result.final_step}: checkpoint saved, exiting cleanly",
          flush=True)
  sys.stdout.flush()


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main, flags_parser=trainer_flags.parse_flags)
