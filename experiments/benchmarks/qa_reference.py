r"""transformers + torch reference for BioASQ factoid QA, on our adapter's windows and metrics.

  python -m experiments.benchmarks.qa_reference --config=experiments/configs/finetune.py:qa \
    <the same --config flags as our run> --ours=W/eval_results.json
"""
from __future__ import annotations

import json
import time

from absl import app, flags
from ml_collections import config_flags
import numpy as np

from experiments.benchmarks import torch_reference as ref

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/finetune.py:qa",
                                          "Fine-tuning config (same overrides as ours).")
_OURS = flags.DEFINE_string("ours", "", "our eval_results.json to compare with")
_OUT = flags.DEFINE_string("out", "", "write the comparison here as JSON")
_THREADS = flags.DEFINE_integer("threads", 0, "torch threads (0 = all cores)")
_SAME_BATCHES = flags.DEFINE_bool(
    "same_batches", True, "train on our trainer's batches (order, group_by_length, "
    "bucket trimming); False: a plain shuffle trimmed to bucket_length")


def main(argv):
  del argv
  t_run = time.time()
  import transformers  # pylint: disable=import-outside-toplevel

  config = _CONFIG.value
  if config.task != "qa":
    raise app.UsageError("qa_reference needs the :qa config")
  torch = ref.torch_setup(_THREADS.value, int(config.seed))
  task, tokenizer, data = ref.build_data(config)
  train, batches = data.splits["train"], data.splits["test"]
  print(f"data: {train.num_features} train windows, {len(batches)} test batches "
        f"({sum(b.num_features for b in batches)} windows), {time.time() - t_run:.0f}s",
        flush=True)
  model = ref.load_model(transformers.BertForQuestionAnswering, config, tokenizer.vocab_size,
                         same_init=ref.SAME_INIT.value)

  def forward(m, batch):
    return m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
             token_type_ids=batch["token_type_ids"])

  def loss_fn(m, batch):
    out = forward(m, batch)
    ce = torch.nn.functional.cross_entropy
    return (ce(out.start_logits, batch["start_positions"])
            + ce(out.end_logits, batch["end_positions"])) / 2

  def outputs_fn(m, batch):
    out = forward(m, batch)
    return {"start_logits": out.start_logits, "end_logits": out.end_logits}

  seconds = ref.train(model, train, config, loss_fn, same_batches=_SAME_BATCHES.value,
                    schedule=ref.SCHEDULE.value)
  results = []
  for split in batches:
    outputs = ref.predict(model, split, int(config.eval_batch_size),
                          int(config.bucket_length), outputs_fn)
    result = task.evaluate(task.decode(outputs, split, config), split, config)
    results.append(result)
    print(f"  {result.get('batch', '')}: strict {result['strict_accuracy']:.4f} lenient "
          f"{result['lenient_accuracy']:.4f} mrr {result['mrr']:.4f}", flush=True)
  average = {k: float(np.mean([r[k] for r in results]))
             for k in ("strict_accuracy", "lenient_accuracy", "mrr")}
  summary = {"batches": results, "average": average, "mrr": average["mrr"]}
  row = ref.report("qa/bioasq6b", summary, seconds, _OURS.value, lambda r: float(r["mrr"]),
                   run_seconds=time.time() - t_run)
  if _OURS.value:
    with open(_OURS.value, encoding="utf-8") as f:
      ours = json.load(f)["test"]
    for k in ("strict_accuracy", "lenient_accuracy"):
      print(f"{k:24s} {ours['average'][k]:10.4f} {average[k]:13.4f}")
  row["reference_result"] = summary
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(row, f, indent=2)


if __name__ == "__main__":
  app.run(main)
