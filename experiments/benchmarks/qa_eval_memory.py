r"""Peak RSS of evaluating the BioASQ 6b batches, stage by stage.

  python -m experiments.benchmarks.qa_eval_memory [--checkpoint=DIR] [--eval_batch_size=N]
"""
from __future__ import annotations

import resource
import time

from absl import app, flags
import jax
import numpy as np

from biobert_jax.trainers import finetune
from biobert_jax.trainers.finetune_batches import predict_split
from biobert_jax.configs import finetune as finetune_configs

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", "", "init checkpoint ('' = random tiny model)")
flags.DEFINE_integer("eval_batch_size", 0, "windows per predict batch (0 = the QA config's)")
flags.DEFINE_integer("max_seq_length", 384, "window length")
flags.DEFINE_list("batches", [], "6b batch numbers to evaluate (default: all five)")


def _rss_mb() -> float:
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return float("nan")


def _peak_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv):
  del argv
  config = finetune_configs.get_config("qa")
  default_vocab = finetune_configs._default_checkpoint()
  config.init_checkpoint = FLAGS.checkpoint
  if not FLAGS.checkpoint:
    config.vocab_path = f"{default_vocab}/vocab.txt"
  config.max_train_examples = 1  # the train split is featurised by build(); keep it small
  if FLAGS.eval_batch_size:
    config.eval_batch_size = FLAGS.eval_batch_size
  config.max_seq_length = FLAGS.max_seq_length
  if FLAGS.batches:
    config.qa.test_files = tuple(f"BioASQ-test-factoid-6b-{int(b)}.json" for b in FLAGS.batches)
    config.qa.golden_files = tuple(f"6B{int(b)}_golden.json" for b in FLAGS.batches)
  print(f"start: rss {_rss_mb():.0f} MB", flush=True)
  t0 = time.time()
  setup = finetune.build(config)
  batches = setup.splits["test"]
  print(f"built ({sum(b.num_features for b in batches)} windows in {len(batches)} batches): "
        f"rss {_rss_mb():.0f} MB, peak {_peak_mb():.0f} MB, {time.time() - t0:.0f}s", flush=True)
  module, task = setup.module, setup.task

  @jax.jit
  def predict_step(params, batch):
    return task.predict_outputs(module.apply({"params": params}, **task.model_inputs(batch)))

  params = jax.device_put(setup.params)
  results = []
  for split in batches:
    t = time.time()
    outputs = predict_split(predict_step, params, split, config.eval_batch_size)
    after_predict = _rss_mb()
    decoded = task.decode(outputs, split, config)
    result = task.evaluate(decoded, split, config)
    results.append(result)
    print(f"{split.extra['name']}: {split.num_features} windows, strict "
          f"{result['strict_accuracy']:.3f} mrr {result['mrr']:.3f}; rss after predict "
          f"{after_predict:.0f} MB, after decode {_rss_mb():.0f} MB, peak {_peak_mb():.0f} MB,"
          f" {time.time() - t:.0f}s", flush=True)
    del outputs, decoded
  print(f"PEAK RSS {_peak_mb():.0f} MB ({_peak_mb() / 1024:.2f} GB) for {len(batches)} batches;"
        f" mean mrr {np.mean([r['mrr'] for r in results]):.4f}; total {time.time() - t0:.0f}s",
        flush=True)


if __name__ == "__main__":
  app.run(main)
