"""What the transformers + torch references share: data through our adapters, BERT's
optimiser and schedule in torch, and the side-by-side report.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import tempfile
import time
from typing import Any
from collections.abc import Callable, Iterator

from absl import app, flags
import ml_collections
from ml_collections import config_flags
import numpy as np
# Every function here runs the torch side: this module is only imported by the references.
import torch
import transformers

from biobert_jax import checkpoints
from biobert_jax.checkpoints import names
from biobert_jax.tasks import get_task
from biobert_jax.tasks.base import SplitData, TaskData
from biobert_jax.trainers import finetune, model_dir as model_dir_lib
from biobert_jax.trainers.batched_predict import trim_batch, trimmed_length
from biobert_jax.trainers.finetune_batches import train_batches
from data_pipeline.tokenization import load_tokenizer


def build_data(config: ml_collections.ConfigDict) -> tuple[Any, Any, TaskData]:
  """(task adapter, tokenizer, TaskData) exactly as experiments.finetune builds them."""
  task = get_task(config.task)
  vocab_path = model_dir_lib.resolve_vocab(config)
  lowercase = model_dir_lib.resolve_lowercase(config, vocab_path)
  tokenizer = load_tokenizer(vocab_path, lowercase=lowercase,
                             extra_tokens=list(task.extra_tokens(config)))
  return task, tokenizer, task.load(config, tokenizer)


def torch_setup(threads: int, seed: int) -> None:
  torch.set_num_threads(threads or os.cpu_count() or 1)
  torch.manual_seed(seed)


@dataclasses.dataclass
class Flags:
  """The flags every reference main defines (`define_flags`)."""
  config: Any
  ours: Any
  out: Any
  threads: Any


def define_flags(task: str) -> Flags:
  """--config (default experiments/configs/finetune.py:<task>), --ours, --out, --threads."""
  return Flags(
      config_flags.DEFINE_config_file("config", f"experiments/configs/finetune.py:{task}",
                                      "Fine-tuning config (same overrides as ours)."),
      flags.DEFINE_string("ours", "", "our eval_results.json to compare with"),
      flags.DEFINE_string("out", "", "write the comparison here as JSON"),
      flags.DEFINE_integer("threads", 0, "torch threads (0 = all cores)"))


def define_same_batches() -> Any:
  return flags.DEFINE_bool(
      "same_batches", True, "train on our trainer's batches (order, group_by_length, "
      "bucket trimming); False: a plain shuffle trimmed to bucket_length")


@dataclasses.dataclass
class Run:
  """What a reference main starts from: the config, our task adapter, tokenizer and data,
  and the time its command started (its `run_seconds` count from there)."""
  config: ml_collections.ConfigDict
  task: Any
  tokenizer: Any
  data: TaskData
  t_run: float

  def model(self, model_class: Any, **kwargs: Any) -> Any:
    """`load_model` with this run's config and vocabulary, --same_init honoured."""
    return load_model(model_class, self.config, self.tokenizer.vocab_size,
                      same_init=SAME_INIT.value, **kwargs)

  def scores(self, model: Any, split: SplitData, bucket: int,
             outputs_fn: Callable[[Any, dict], dict[str, Any]]) -> dict:
    """`predict` over the split, then the adapter's own decode + evaluate."""
    outputs = predict(model, split, int(self.config.eval_batch_size), bucket, outputs_fn)
    return self.task.evaluate(self.task.decode(outputs, split, self.config), split,
                              self.config)


def start(f: Flags, task: str) -> Run:
  """Checks the config is the task's, seeds torch, builds the data as our trainer does."""
  t_run = time.time()
  config = f.config.value
  if config.task != task:
    raise app.UsageError(f"{task}_reference needs the :{task} config")
  torch_setup(f.threads.value, int(config.seed))
  adapter, tokenizer, data = build_data(config)
  return Run(config, adapter, tokenizer, data, t_run)


def write(row: dict, path: str) -> None:
  """The comparison as JSON at `path` ('' = not written)."""
  if path:
    with open(path, "w", encoding="utf-8") as f:
      json.dump(row, f, indent=2)


def load_model(model_class: Any, config: ml_collections.ConfigDict, vocab_size: int,
               same_init: bool = False, **kwargs: Any) -> Any:
  """`model_class.from_pretrained(config.init_checkpoint, **kwargs)` as our trainer builds
  it: config.dropout_rate (>= 0) on every dropout, the word embeddings grown to the
  tokenizer's `vocab_size` (task extra tokens) like our vocab surgery.

  same_init: start from our trainer's very initial weights instead (`finetune.build` at
  config.seed: the grafted encoder, its new vocabulary rows and the task head's init), so
  that with dropout off the two sides differ only in their arithmetic."""
  if same_init:
    model = _from_our_init(model_class, config, **kwargs)
  else:
    model = model_class.from_pretrained(config.init_checkpoint, **kwargs)
    grow_vocab(model, vocab_size, model.config.initializer_range, int(config.seed))
  if model.get_input_embeddings().weight.shape[0] != vocab_size:
    raise ValueError(f"the model has {model.get_input_embeddings().weight.shape[0]} "
                     f"vocabulary rows, the tokenizer {vocab_size}")
  if config.dropout_rate >= 0:
    for m in model.modules():
      if isinstance(m, torch.nn.Dropout):
        m.p = float(config.dropout_rate)
  return model


def _from_our_init(model_class: Any, config: ml_collections.ConfigDict, **kwargs: Any) -> Any:
  """`model_class` holding `finetune.build(config).params`: the encoder through our HF
  export, each task head under its transformers name (checkpoints' TASK_HEADS table)."""
  setup = finetune.build(config)
  params = setup.params
  with tempfile.TemporaryDirectory() as tmp:
    path = checkpoints.export_hf(setup.bert_config, {"encoder": params["encoder"]}, tmp)
    model = model_class.from_pretrained(str(path), **kwargs)
  heads = {}
  for head in names.TASK_HEADS["hf"]:
    if head.ours in params:
      heads[head.kernel] = torch.tensor(np.asarray(params[head.ours]["kernel"]).T)
      heads[head.bias] = torch.tensor(np.asarray(params[head.ours]["bias"]))
  unused = sorted(set(params) - {"encoder"} - {h.ours for h in names.TASK_HEADS["hf"]})
  missing = [k for k in model.state_dict() if k not in heads and not k.startswith("bert.")]
  if unused or missing:
    raise ValueError(f"same_init: our heads {unused} have no transformers name, and "
                     f"{missing} of {model_class.__name__} would stay random")
  with torch.no_grad():
    model.load_state_dict(heads, strict=False)
  return model


def grow_vocab(model: Any, vocab_size: int, initializer_range: float, seed: int) -> None:
  """New rows = mean of the old rows + N(0, initializer_range / 10), as our extend_vocab."""
  old = model.get_input_embeddings().weight.shape[0]
  if vocab_size <= old:
    return
  model.resize_token_embeddings(vocab_size, mean_resizing=False)
  table = model.get_input_embeddings().weight
  rng = np.random.default_rng(seed)
  with torch.no_grad():
    mean = table[:old].mean(0, keepdim=True)
    noise = torch.tensor(rng.normal(0.0, initializer_range / 10, (vocab_size - old,
                                                                   table.shape[1])),
                         dtype=table.dtype)
    table[old:] = mean + noise


SCHEDULES = ("bert", "transformers")
# Every reference main takes it (they all import this module).
SCHEDULE = flags.DEFINE_enum("schedule", "bert", list(SCHEDULES),
                             "learning-rate schedule of the torch side (see make_optimizer)")
SAME_INIT = flags.DEFINE_bool(
    "same_init", False, "start from our trainer's initial weights at config.seed (encoder, "
    "new vocabulary rows, task head) instead of transformers' own head init and torch's "
    "draw of the new rows; with --config.dropout_rate=0 only the arithmetic differs")


def make_optimizer(model: Any, config: ml_collections.ConfigDict, total_steps: int,
                   schedule: str = "bert"):
  """torch AdamW with the same hyper-parameters as our optax AdamW (bias-corrected, no decay
  on LayerNorm and biases, eps; clip applied by the loop) and a learning-rate schedule:

  - "bert" (default): ours, i.e. original BERT's `optimization.py` that BioBERT trains with
    (`optim.bert_schedule`): lr * step / warmup during warmup, then lr * (1 - step / total).
  - "transformers": `get_linear_schedule_with_warmup`, lr * (total - step) / (total - warmup)
    after warmup. It peaks at lr where BERT's is already at lr * (1 - warmup / total), so it
    runs 1 / (1 - warmup_proportion) (1.11x at 0.1) higher through the whole decay, i.e.
    a larger budget than ours.
  """
  if schedule not in SCHEDULES:
    raise ValueError(f"schedule={schedule!r}; valid: {', '.join(SCHEDULES)}")
  decay, no_decay = [], []
  for name, p in model.named_parameters():
    (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
  o = config.optim
  opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=o.learning_rate, betas=(o.b1, o.b2), eps=o.eps)
  warmup = int(total_steps * o.warmup_proportion)
  if schedule == "transformers":
    return opt, transformers.get_linear_schedule_with_warmup(opt, warmup, total_steps)
  total = max(int(total_steps), 1)

  def bert_factor(step: int) -> float:  # optim.bert_schedule / learning_rate
    return step / warmup if step < warmup else 1.0 - min(step, total) / total
  return opt, torch.optim.lr_scheduler.LambdaLR(opt, bert_factor)


def batches(split: SplitData, batch_size: int, epochs: int, seed: int, bucket: int
            ) -> Iterator[dict[str, np.ndarray]]:
  """Shuffled batches, each epoch's remainder dropped (one shape, like our trainer)."""
  rng = np.random.default_rng(seed)
  n = split.num_features
  for _ in range(epochs):
    order = rng.permutation(n)
    for start in range(0, n - batch_size + 1, batch_size):
      idx = order[start:start + batch_size]
      yield trim({k: v[idx] for k, v in split.features.items()}, bucket)


def our_batches(split: SplitData, config: ml_collections.ConfigDict
                ) -> Iterator[dict[str, np.ndarray]]:
  """The very batches our trainer feeds, in its order: epoch order from (seed, epoch),
  config.group_by_length grouping, config.bucket_length trimming. With them the two
  sides differ only in the model code and the optimiser implementation."""
  steps_per_epoch = split.num_features // config.batch_size
  stream = train_batches(split, int(config.batch_size), steps_per_epoch, int(config.seed),
                         0, int(config.bucket_length), int(config.group_by_length))
  return itertools.islice(stream, steps_per_epoch * int(config.num_epochs))


def trim(batch: dict[str, np.ndarray], bucket: int) -> dict[str, np.ndarray]:
  """Cuts [B, L, ...] arrays to the longest row rounded up to `bucket` (0 = keep L), by our
  trainer's rule (batched_predict.trimmed_length / trim_batch)."""
  if "attention_mask" not in batch:
    return batch
  full = batch["attention_mask"].shape[1]
  return trim_batch(batch, trimmed_length(batch["attention_mask"], bucket), full)


def train(model: Any, split: SplitData, config: ml_collections.ConfigDict,
          loss_fn: Callable[[Any, dict], Any], log_every: int = 50,
          on_epoch_end: Callable[[int], None] | None = None,
          same_batches: bool = False, schedule: str = "bert") -> float:
  """Trains in place; returns wall seconds (`on_epoch_end(epoch)`'s time included). Logs
  the mean loss of the steps since the previous line, as our trainer does.

  same_batches: feed `our_batches` (our trainer's order, grouping and trimming) instead of
  a plain shuffle trimmed to config.bucket_length. schedule: see make_optimizer.
  """
  steps_per_epoch = split.num_features // config.batch_size
  total = steps_per_epoch * config.num_epochs
  opt, lr_schedule = make_optimizer(model, config, total, schedule)
  model.train()
  t0 = time.time()
  stream = (our_batches(split, config) if same_batches else
            batches(split, config.batch_size, config.num_epochs, config.seed,
                    config.bucket_length))
  window: list[float] = []  # losses since the last log line, averaged as our trainer logs
  for step, batch in enumerate(stream, start=1):
    loss = loss_fn(model, {k: torch.as_tensor(v, dtype=torch.long) for k, v in batch.items()})
    window.append(float(loss.item()))
    loss.backward()
    if config.optim.clip_norm > 0:
      torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.clip_norm)
    opt.step()
    lr_schedule.step()
    opt.zero_grad(set_to_none=True)
    if step % log_every == 0 or step == total:
      print(f"  torch step {step}/{total} loss {np.mean(window):.4f} "
            f"({time.time() - t0:.0f}s)", flush=True)
      window.clear()
    if on_epoch_end is not None and step % steps_per_epoch == 0:
      on_epoch_end(step // steps_per_epoch)
      model.train()
  return time.time() - t0


def predict(model: Any, split: SplitData, batch_size: int, bucket: int,
            outputs_fn: Callable[[Any, dict], dict[str, Any]]) -> dict[str, np.ndarray]:
  """Outputs over all features in order; outputs cut to a bucket ([B, l] logits, [B, l, C]
  probabilities) are padded back to full length (-1e4 for logits, 0 for the rest)."""
  model.eval()
  full = split.features["attention_mask"].shape[1]
  chunks: list[dict[str, np.ndarray]] = []
  with torch.no_grad():
    for start in range(0, split.num_features, batch_size):
      batch = trim({k: v[start:start + batch_size] for k, v in split.features.items()}, bucket)
      out = outputs_fn(model, {k: torch.as_tensor(v, dtype=torch.long)
                               for k, v in batch.items()})
      chunk = {}
      for k, v in out.items():
        v = v.float().numpy()
        if v.ndim >= 2 and v.shape[1] < full and (k.endswith("_logits") or v.ndim == 3):
          pad = [(0, 0), (0, full - v.shape[1])] + [(0, 0)] * (v.ndim - 2)
          v = np.pad(v, pad, constant_values=-1e4 if k.endswith("_logits") else 0.0)
        chunk[k] = v
      chunks.append(chunk)
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def report(label: str, theirs: dict, theirs_seconds: float, ours_path: str,
           metric_of: Callable[[dict], float], run_seconds: float | None = None) -> dict:
  """Prints ours vs the reference; returns the comparison (also written as JSON by callers).

  run_seconds: the reference's whole command from the start of its main (data, model,
  training, every evaluation), compared with our `run_seconds`: the wall time a user waits."""
  row = {"task": label, "reference": metric_of(theirs), "reference_seconds": theirs_seconds}
  if run_seconds is not None:
    row["reference_run_seconds"] = run_seconds
  if ours_path:
    with open(ours_path, encoding="utf-8") as f:
      ours = json.load(f)
    row["ours"] = metric_of(ours["test"])
    row["ours_seconds"] = ours.get("train_seconds")
    row["ours_run_seconds"] = ours.get("run_seconds")
  print(f"{'':24s} {'ours':>10s} {'transformers':>13s}")
  print(f"{label + ' test':24s} {row.get('ours', float('nan')):10.4f} {row['reference']:13.4f}")
  if ours_path:
    ours_s = row["ours_seconds"]
    print(f"{'train wall seconds':24s} {ours_s if ours_s is not None else float('nan'):10.0f} "
          f"{theirs_seconds:13.0f}")
    if run_seconds is not None and row["ours_run_seconds"]:
      row["run_seconds_ratio_ours_over_reference"] = row["ours_run_seconds"] / run_seconds
      print(f"{'command wall seconds':24s} {row['ours_run_seconds']:10.0f} {run_seconds:13.0f}"
            f"   ours/reference {row['run_seconds_ratio_ours_over_reference']:.2f}x")
    print(f"{'gap (ours - reference)':24s} {row['ours'] - row['reference']:+10.4f}")
  return row
