r"""NER end to end: our `experiments.finetune` command against a transformers + torch script
doing the same work -- same checkpoint, features, epochs, batch, optimiser, dev evaluation
at every epoch end with the best epoch kept, and the same test scoring.

  O="--config.ner.corpus=NCBI-disease --config.max_train_examples=2000 \
     --config.num_epochs=2 --config.max_eval_examples=500 --config.learning_rate=5e-5"
  python -m experiments.finetune --config=experiments/configs/finetune.py:ner $O \
    --config.save_model=False --workdir=/tmp/ner_ours
  python -m experiments.benchmarks.ner_reference --config=experiments/configs/finetune.py:ner \
    $O --ours=/tmp/ner_ours/eval_results.json --out=/tmp/ner_e2e.json

The reference is what a transformers user writes: `BertForTokenClassification` from the same
HF checkpoint (default MiniLM), torch AdamW with BERT's settings, clipping, BERT's linear
warmup and decay (`--schedule=transformers`: transformers' variant, a higher rate), and batches padded to their longest row in random order (`--padding=longest`,
transformers' DataCollatorForTokenClassification; `--padding=bucket` cuts to
config.bucket_length like our trainer, without our length grouping). It takes the features
our NER adapter builds (readers, word pieces, windows) and scores with the adapter's own
decode + conlleval-equivalent metric, so a gap is the model or the training, never the data
or the metric. Printed and written: test F1 and wall seconds of both sides -- ours is
eval_results.json's `run_seconds` (data, build, compiles, training, evaluations, export:
what the command costs), the reference's is the same span of this script. Run the two
one after the other on an otherwise idle machine; only the ratio means anything.
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
