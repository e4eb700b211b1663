r"""transformers + torch reference for relation extraction, on our adapter's features and metric.

  python -m experiments.benchmarks.re_reference --config=experiments/configs/finetune.py:re \
    <the same --config flags as our run> --ours=W/eval_results.json
"""
from __future__ import annotations

import json
import time

from absl import app, flags
from ml_collections import config_flags

from experiments.benchmarks import torch_reference as ref

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/finetune.py:re",
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
  if config.task != "re":
    raise app.UsageError("re_reference needs the :re config")
  if config.re.get("pooling", "cls") != "cls":
    raise app.UsageError("transformers' BertForSequenceClassification pools [CLS]; compare "
                         "with --config.re.pooling=cls")
  torch = ref.torch_setup(_THREADS.value, int(config.seed))
  task, tokenizer, data = ref.build_data(config)
  train, test, dev = data.splits["train"], data.splits["test"], data.splits.get("dev")
  print(f"data: {train.num_features} train / {dev.num_features if dev else 0} dev / "
        f"{test.num_features} test rows, labels {data.labels}, {time.time() - t_run:.0f}s",
        flush=True)
  model = ref.load_model(transformers.BertForSequenceClassification, config, tokenizer.vocab_size,
                         same_init=ref.SAME_INIT.value, num_labels=len(data.labels))

  def loss_fn(m, batch):
    logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
               token_type_ids=batch["token_type_ids"]).logits
    return torch.nn.functional.cross_entropy(logits, batch["label_ids"], ignore_index=-100)

  def outputs_fn(m, batch):
    return {"logits": m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"]).logits}

  seconds = ref.train(model, train, config, loss_fn, same_batches=_SAME_BATCHES.value,
                    schedule=ref.SCHEDULE.value)

  def scores(split):
    outputs = ref.predict(model, split, int(config.eval_batch_size), int(config.bucket_length),
                          outputs_fn)
    return task.evaluate(task.decode(outputs, split, config), split, config)

  # Our trainer scores dev (when the corpus has one: ChemProt) and test at the end; so does
  # the reference, so that both commands do the same work.
  dev_result = scores(dev) if dev is not None else None
  result = scores(test)
  run_seconds = time.time() - t_run
  if dev_result is not None:
    print(f"dev f1 {dev_result['f1']:.4f}", flush=True)
  print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}), flush=True)
  row = ref.report(f"re/{config.re.corpus}", result, seconds, _OURS.value,
                   lambda r: float(r["f1"]), run_seconds=run_seconds)
  if dev_result is not None:
    row["reference_dev_result"] = dev_result
  row["reference_result"] = result
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(row, f, indent=2)


if __name__ == "__main__":
  app.run(main)
