r"""Fine-tunes a BERT checkpoint on NER, RE, QA or multi-task NER (docs/finetuning.md).

  python -m experiments.finetune --config=experiments/configs/finetune.py:ner \
    --config.init_checkpoint=PATH --workdir=/tmp/ncbi
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from biobert_jax import locking, runtime
from biobert_jax.checkpoints.convert import CheckpointError
from biobert_jax.checkpoints.manager import CheckpointMismatchError
from biobert_jax.trainers import finetune as finetune_lib
from experiments import trainer_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Fine-tuning config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv):
    # Progress lines are printed; orbax logs every file it writes at INFO.
    logging.set_verbosity(logging.WARNING)
  runtime.setup_process()  # CPU: host allocator settings; all: compile cache
  try:
    results = finetune_lib.run(_CONFIG.value, _WORKDIR.value)
  except (locking.LockHeld, CheckpointError, CheckpointMismatchError) as e:
    # another run writes there, or its checkpoints do not fit: one line, exit status 1
    sys.exit(f"error: {e}")
  if results.get("preempted"):
    return
  metric = results["primary_metric"]
  for split in ("dev", "test"):
    if split in results:
      print(f"{split} {metric}: {results[split][metric]:.4f}")


if __name__ == "__main__":
  app.run(main, flags_parser=trainer_flags.parse_flags)
