r"""transformers + torch reference for relation extraction, on our adapter's features and metric.

  python -m experiments.benchmarks.re_reference --config=experiments/configs/finetune.py:re \
    <the same --config flags as our run> --ours=W/eval_results.json
"""
from __future__ import annotations

import json
import time

from absl import app
import torch
import transformers

from experiments.benchmarks import torch_reference as ref

_FLAGS = ref.define_flags("re")
_SAME_BATCHES = ref.define_same_batches()


def main(argv):
  del argv
  run = ref.start(_FLAGS, "re")
  config, data = run.config, run.data
  if config.re.get("pooling", "cls") != "cls":
    raise app.UsageError("transformers' BertForSequenceClassification pools [CLS]; compare "
                         "with --config.re.pooling=cls")
  train, test, dev = data.splits["train"], data.splits["test"], data.splits.get("dev")
  print(f"data: {train.num_features} train / {dev.num_features if dev else 0} dev / "
        f"{test.num_features} test rows, labels {data.labels}, "
        f"{time.time() - run.t_run:.0f}s", flush=True)
  model = run.model(transformers.BertForSequenceClassification, num_labels=len(data.labels))

  def loss_fn(m, batch):
    logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
               token_type_ids=batch["token_type_ids"]).logits
    return torch.nn.functional.cross_entropy(logits, batch["label_ids"], ignore_index=-100)

  def outputs_fn(m, batch):
    return {"logits": m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"]).logits}

  seconds = ref.train(model, train, config, loss_fn, same_batches=_SAME_BATCHES.value,
                      schedule=ref.SCHEDULE.value)
  bucket = int(config.bucket_length)
  # Our trainer scores dev (when the corpus has one: ChemProt) and test at the end; so does
  # the reference, so that both commands do the same work.
  dev_result = run.scores(model, dev, bucket, outputs_fn) if dev is not None else None
  result = run.scores(model, test, bucket, outputs_fn)
  run_seconds = time.time() - run.t_run
  if dev_result is not None:
    print(f"dev f1 {dev_result['f1']:.4f}", flush=True)
  print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}), flush=True)
  row = ref.report(f"re/{config.re.corpus}", result, seconds, _FLAGS.ours.value,
                   lambda r: float(r["f1"]), run_seconds=run_seconds)
  if dev_result is not None:
    row["reference_dev_result"] = dev_result
  row["reference_result"] = result
  ref.write(row, _FLAGS.out.value)


if __name__ == "__main__":
  app.run(main)
