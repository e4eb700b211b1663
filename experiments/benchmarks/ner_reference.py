r"""NER end to end: `experiments.finetune` vs a transformers + torch script doing the same work.

  python -m experiments.benchmarks.ner_reference --config=experiments/configs/finetune.py:ner \
    <the same --config flags as our run> --ours=W/eval_results.json --out=ner_e2e.json
"""
from __future__ import annotations

import copy
import json
import time

from absl import app, flags
from ml_collections import config_flags

from experiments.benchmarks import torch_reference as ref

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/finetune.py:ner",
                                          "Fine-tuning config (same overrides as ours).")
_OURS = flags.DEFINE_string("ours", "", "our eval_results.json to compare with")
_OUT = flags.DEFINE_string("out", "", "write the comparison here as JSON")
_THREADS = flags.DEFINE_integer("threads", 0, "torch threads (0 = all cores)")
_PADDING = flags.DEFINE_enum("padding", "longest", ["longest", "bucket"],
                             "longest: each batch padded to its longest row (transformers' "
                             "collator); bucket: to config.bucket_length multiples")


def main(argv):
  del argv
  t_run = time.time()
  import transformers  # pylint: disable=import-outside-toplevel

  config = _CONFIG.value
  if config.task != "ner":
    raise app.UsageError("ner_reference needs the :ner config")
  torch = ref.torch_setup(_THREADS.value, int(config.seed))
  task, tokenizer, data = ref.build_data(config)
  train, dev, test = (data.splits[k] for k in ("train", "dev", "test"))
  print(f"data: {train.num_features} train / {dev.num_features} dev / {test.num_features} "
        f"test windows, labels {data.labels}, {time.time() - t_run:.0f}s", flush=True)
  model = ref.load_model(transformers.BertForTokenClassification, config,
                         tokenizer.vocab_size, same_init=ref.SAME_INIT.value,
                         num_labels=len(data.labels))
  bucket = 1 if _PADDING.value == "longest" else int(config.bucket_length)
  train_config = copy.deepcopy(config)
  train_config.bucket_length = bucket

  def loss_fn(m, batch):
    return m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
             token_type_ids=batch["token_type_ids"], labels=batch["labels"]).loss

  def outputs_fn(m, batch):
    logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
               token_type_ids=batch["token_type_ids"]).logits
    return {"probs": torch.softmax(logits.float(), dim=-1)}

  def scores(split):
    outputs = ref.predict(model, split, int(config.eval_batch_size), bucket, outputs_fn)
    return task.evaluate(task.decode(outputs, split, config), split, config)

  best = {"f1": -1.0, "epoch": 0, "state": None}
  history = []

  def on_epoch_end(epoch):  # as our trainer: dev F1 each epoch, the best epoch's weights kept
    f1 = float(scores(dev)["f1"])
    history.append({"epoch": epoch, "dev_f1": f1})
    print(f"  epoch {epoch}: dev f1 {f1:.4f}", flush=True)
    if f1 > best["f1"]:
      best.update(f1=f1, epoch=epoch,
                  state={k: v.detach().clone() for k, v in model.state_dict().items()})

  train_seconds = ref.train(model, train, train_config, loss_fn, on_epoch_end=on_epoch_end,
                            schedule=ref.SCHEDULE.value)
  model.load_state_dict(best["state"])
  result = {"dev": scores(dev), "test": scores(test), "best_epoch": best["epoch"],
            "history": history}
  run_seconds = time.time() - t_run
  print(json.dumps({k: v for k, v in result["test"].items() if not isinstance(v, dict)}),
        flush=True)
  row = ref.report(f"ner/{config.ner.corpus}", result["test"], train_seconds, _OURS.value,
                   lambda r: float(r["f1"]), run_seconds=run_seconds)
  row.update(padding=_PADDING.value, reference_result=result)
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(row, f, indent=2)


if __name__ == "__main__":
  app.run(main)
