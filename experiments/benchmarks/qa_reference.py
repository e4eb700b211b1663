r"""transformers + torch reference for BioASQ factoid QA, on our adapter's windows and metrics.

  python -m experiments.benchmarks.qa_reference --config=experiments/configs/finetune.py:qa \
    <the same --config flags as our run> --ours=W/eval_results.json
"""
from __future__ import annotations

import json
import time

from absl import app
import numpy as np
import torch
import transformers

from experiments.benchmarks import torch_reference as ref

_FLAGS = ref.define_flags("qa")
_SAME_BATCHES = ref.define_same_batches()


def main(argv):
  del argv
  run = ref.start(_FLAGS, "qa")
  config = run.config
  train, batches = run.data.splits["train"], run.data.splits["test"]
  print(f"data: {train.num_features} train windows, {len(batches)} test batches "
        f"({sum(b.num_features for b in batches)} windows), {time.time() - run.t_run:.0f}s",
        flush=True)
  model = run.model(transformers.BertForQuestionAnswering)

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
    result = run.scores(model, split, int(config.bucket_length), outputs_fn)
    results.append(result)
    print(f"  {result.get('batch', '')}: strict {result['strict_accuracy']:.4f} lenient "
          f"{result['lenient_accuracy']:.4f} mrr {result['mrr']:.4f}", flush=True)
  average = {k: float(np.mean([r[k] for r in results]))
             for k in ("strict_accuracy", "lenient_accuracy", "mrr")}
  summary = {"batches": results, "average": average, "mrr": average["mrr"]}
  row = ref.report("qa/bioasq6b", summary, seconds, _FLAGS.ours.value,
                   lambda r: float(r["mrr"]), run_seconds=time.time() - run.t_run)
  if _FLAGS.ours.value:
    with open(_FLAGS.ours.value, encoding="utf-8") as f:
      ours = json.load(f)["test"]
    for k in ("strict_accuracy", "lenient_accuracy"):
      print(f"{k:24s} {ours['average'][k]:10.4f} {average[k]:13.4f}")
  row["reference_result"] = summary
  ref.write(row, _FLAGS.out.value)


if __name__ == "__main__":
  app.run(main)
