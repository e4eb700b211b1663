r"""Fine-tunes a BERT checkpoint on NER, RE or QA.

  python -m experiments.finetune --config=experiments/configs/finetune.py:ner \
    --config.data_dir=../shared/data/ner/NCBI-disease --config.init_checkpoint=PATH \
    --config.num_epochs=3 --workdir=/tmp/ncbi

Runs on the device mesh `--config.mesh.data/fsdp/tensor` (default: data parallel over all
devices). Re-running the same command on the same workdir resumes from its last checkpoint
(every --config.checkpoint_every steps and every epoch end); a different config refuses
to run there unless --config.overwrite=True. SIGTERM saves a checkpoint and exits 0.

Writes to --workdir: config.json, surgery_report.json, checkpoints/, checkpoints_best/,
metrics.jsonl, eval_metrics.jsonl, tensorboard/, and when done eval_results.json,
predictions_{dev,test}.* and model/ (the best epoch, for experiments.predict). The trainer
is biobert_jax/trainers/finetune.py; the task adapters are biobert_jax/tasks.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from biobert_jax import runtime
from biobert_jax.trainers import finetune as finetune_lib

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
  results = finetune_lib.run(_CONFIG.value, _WORKDIR.value)
  if results.get("preempted"):
    return
  metric = results["primary_metric"]
  for split in ("dev", "test"):
    if split in results:
      print(f"{split} {metric}: {results[split][metric]:.4f}")


if __name__ == "__main__":
  app.run(main)
