r"""NER end to end: `experiments.finetune` vs a transformers + torch script doing the same work.

  python -m experiments.benchmarks.ner_reference --config=experiments/configs/finetune.py:ner \
    <the same --config flags as our run> --ours=W/eval_results.json --out=ner_e2e.json
"""
from __future__ import annotations

import copy
import json
import time

from absl import app, flags
import torch
import transformers

from experiments.benchmarks import torch_reference as ref

_FLAGS = ref.define_flags("ner")
_PADDING = flags.DEFINE_enum("padding", "longest", ["longest", "bucket"],
                             "longest: each batch padded to its longest row (transformers' "
                             "collator); bucket: to config.bucket_length multiples")


def main(argv):
  del argv
  run = ref.start(_FLAGS, "ner")
  config, data = run.config, run.data
  train, dev, test = (data.splits[k] for k in ("train", "dev", "test"))
  print(f"data: {train.num_features} train / {dev.num_features} dev / {test.num_features} "
        f"test windows, labels {data.labels}, {time.time() - run.t_run:.0f}s", flush=True)
  model = run.model(transformers.BertForTokenClassification, num_labels=len(data.labels))
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

  best = {"f1": -1.0, "epoch": 0, "state": None}
  history = []

  def on_epoch_end(epoch):  # as our trainer: dev F1 each epoch, the best epoch's weights kept
    f1 = float(run.scores(model, dev, bucket, outputs_fn)["f1"])
    history.append({"epoch": epoch, "dev_f1": f1})
    print(f"  epoch {epoch}: dev f1 {f1:.4f}", flush=True)
    if f1 > best["f1"]:
      best.update(f1=f1, epoch=epoch,
                  state={k: v.detach().clone() for k, v in model.state_dict().items()})

  train_seconds = ref.train(model, train, train_config, loss_fn, on_epoch_end=on_epoch_end,
                            schedule=ref.SCHEDULE.value)
  model.load_state_dict(best["state"])
  result = {"dev": run.scores(model, dev, bucket, outputs_fn),
            "test": run.scores(model, test, bucket, outputs_fn), "best_epoch": best["epoch"],
            "history": history}
  run_seconds = time.time() - run.t_run
  print(json.dumps({k: v for k, v in result["test"].items() if not isinstance(v, dict)}),
        flush=True)
  row = ref.report(f"ner/{config.ner.corpus}", result["test"], train_seconds,
                   _FLAGS.ours.value, lambda r: float(r["f1"]), run_seconds=run_seconds)
  row.update(padding=_PADDING.value, reference_result=result)
  ref.write(row, _FLAGS.out.value)


if __name__ == "__main__":
  app.run(main)
