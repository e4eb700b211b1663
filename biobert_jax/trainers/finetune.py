"""The fine-tuning loop shared by NER, RE and QA (the task adapters are experiments/tasks).

`run(config, workdir)`: checkpoint + tokenizer -> task extra tokens (vocab surgery) -> task
data -> task model, init, graft the pre-trained encoder -> AdamW with BERT's warmup/decay ->
jit'd train steps, dev evaluation every epoch, best epoch kept -> final dev/test evaluation
of the best params, predictions, eval_results.json, and the best model in
`<workdir>/model/` (native checkpoint + vocab.txt + task.json) for experiments.predict.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import shutil
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax

from biobert_jax.checkpoints import surgery
from biobert_jax.config import BertConfig
from biobert_jax import models
from biobert_jax.models import init_params
from biobert_jax.train.optim import make_optimizer
from data_pipeline.tokenization import load_tokenizer, read_vocab
from biobert_jax.trainers import model_dir as finetune_io
from biobert_jax.tasks import SplitData, Task, get_task



@dataclasses.dataclass
class Setup:
  """Everything built before training starts."""
  task: Task
  tokenizer: Any
  bert_config: BertConfig
  module: Any
  params: Any
  splits: dict[str, Any]
  vocab_path: str
  lowercase: bool
  extra_tokens: list[str]


def _pretrained(config: ml_collections.ConfigDict) -> tuple[BertConfig | None, Any]:
  if not config.init_checkpoint:
    return None, None
  from biobert_jax import checkpoints  # pylint: disable=import-outside-toplevel

  return checkpoints.load(config.init_checkpoint)


def build(config: ml_collections.ConfigDict, workdir: str) -> Setup:
  """Tokenizer, data, model and grafted params (the surgery report goes to workdir)."""
  task = get_task(config.task)
  bert_config, pretrained = _pretrained(config)
  vocab_path = finetune_io.resolve_vocab(config)
  lowercase = finetune_io.resolve_lowercase(config, vocab_path)
  extra = list(task.extra_tokens(config))
  tokenizer = load_tokenizer(vocab_path, lowercase=lowercase, extra_tokens=extra)
  if bert_config is None:  # random init: a preset sized to the vocabulary
    bert_config = BertConfig.preset(config.model_preset, vocab_size=tokenizer.vocab_size,
                                    max_position_embeddings=max(512, config.max_seq_length))
  elif tokenizer.vocab_size > bert_config.vocab_size:
    # The tokenizer gives extra tokens ids len(vocab.txt) + i; grow the table to match.
    bert_config, pretrained = surgery.extend_vocab(
        bert_config, pretrained, tokenizer.vocab_size - bert_config.vocab_size, init="mean",
        rng=int(config.seed))
  if config.max_seq_length > bert_config.max_position_embeddings:
    if pretrained is not None:
      bert_config, pretrained = surgery.extend_position_embeddings(
          bert_config, pretrained, config.max_seq_length)
    else:
      bert_config = bert_config.replace(max_position_embeddings=config.max_seq_length)
  if config.dropout_rate >= 0:
    bert_config = bert_config.replace(hidden_dropout_prob=float(config.dropout_rate),
                                      attention_probs_dropout_prob=float(config.dropout_rate))
  splits = task.load(config, tokenizer)
  module = task.make_model(bert_config, config, models.compute_dtype(config.dtype))
  params = init_params(module, jax.random.key(int(config.seed)),
                       seq_len=min(16, int(config.max_seq_length)), **task.init_kwargs(config))
  if pretrained is not None:
    params, report = surgery.graft_encoder(params, pretrained, reinit=tuple(config.reinit))
    print(report.format(), flush=True)
    report.save(os.path.join(workdir, "surgery_report.json"))
  return Setup(task, tokenizer, bert_config, module, params, splits, vocab_path, lowercase,
               extra)


def trainable_patterns(config: ml_collections.ConfigDict,
                       bert_config: BertConfig) -> tuple[str, ...]:
  patterns = tuple(config.trainable)
  if config.trainable_top_k >= 0:
    patterns += surgery.trainable_patterns_top_k(bert_config, int(config.trainable_top_k))
  return patterns


def make_steps(setup: Setup, tx: optax.GradientTransformation,
               schedule: Callable) -> tuple[Callable, Callable]:
  """jit'd (train_step, predict_step)."""
  task, module = setup.task, setup.module

  def train_step(params, opt_state, batch, rng, step):
    def loss_fn(p):
      outputs = module.apply({"params": p}, **task.model_inputs(batch), deterministic=False,
                             rngs={"dropout": rng})
      return task.loss(outputs, batch)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads),
                   learning_rate=schedule(step))
    return params, opt_state, metrics

  def predict_step(params, batch):
    outputs = module.apply({"params": params}, **task.model_inputs(batch), deterministic=True)
    return task.predict_outputs(outputs)

  return jax.jit(train_step, donate_argnums=(0, 1)), jax.jit(predict_step)


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator,
                  lengths: np.ndarray | None = None, group: int = 0) -> list[np.ndarray]:
  """One epoch of sorted index batches: n // batch_size of them, the remainder dropped.

  With `group` > 0 and `lengths`, rows are shuffled, then sorted by length inside chunks of
  `group` batches, and the batches are shuffled again: batches hold similar lengths, so
  trimming (bucket_length) skips most padding, while the order stays random (as HF's
  group_by_length).
  """
  order = rng.permutation(n)
  steps = n // batch_size
  if group > 0 and lengths is not None:
    chunk = group * batch_size
    order = np.concatenate([c[np.argsort(lengths[c], kind="stable")]
                            for c in np.array_split(order, range(chunk, n, chunk))])
    batches = [order[b * batch_size:(b + 1) * batch_size] for b in range(steps)]
    batches = [batches[i] for i in rng.permutation(steps)]
  else:
    batches = [order[b * batch_size:(b + 1) * batch_size] for b in range(steps)]
  return [np.sort(b) for b in batches]


def trimmed_length(attention_mask: np.ndarray, bucket: int) -> int:
  """The batch's longest row rounded up to a multiple of `bucket` (at most the full length).

  Few distinct lengths means few compilations, and short batches skip most of the padding
  (NER sentences average ~40 pieces against a max_seq_length of 128).
  """
  full = attention_mask.shape[1]
  if bucket <= 0:
    return full
  longest = int(attention_mask.sum(axis=1).max()) if attention_mask.size else 1
  return min(full, max(bucket, -(-longest // bucket) * bucket))


def trim_batch(batch: dict[str, np.ndarray], length: int, full: int) -> dict[str, np.ndarray]:
  """Cuts every [B, full, ...] array to [B, length, ...]."""
  if length == full:
    return batch
  return {k: v[:, :length] if v.ndim >= 2 and v.shape[1] == full else v
          for k, v in batch.items()}


def predict_split(predict_step: Callable, params: Any, split: SplitData, batch_size: int,
                  bucket: int = 0) -> dict[str, np.ndarray]:
  """Outputs over all features of a split, in feature order.

  The last batch is padded, then cut back. With `bucket` > 0 the features run sorted by
  length with trimmed padding, and [B, length, ...] outputs are padded back to the full
  sequence length with zeros (positions that were padding).
  """
  n = split.num_features
  mask = split.features.get("attention_mask")
  use_buckets = bucket > 0 and mask is not None
  full = mask.shape[1] if mask is not None else 0
  order = np.argsort(mask.sum(axis=1), kind="stable") if use_buckets else np.arange(n)
  chunks: list[dict[str, np.ndarray]] = []
  for start in range(0, n, batch_size):
    idx = order[start:start + batch_size]
    batch = {k: v[idx] for k, v in split.features.items()}
    rows = len(idx)
    if rows < batch_size:  # one batch size for every batch: fewer compilations
      batch = {k: np.concatenate([v, np.repeat(v[:1], batch_size - rows, axis=0)])
               for k, v in batch.items()}
    length = trimmed_length(batch["attention_mask"], bucket) if use_buckets else full
    out = jax.device_get(predict_step(params, trim_batch(batch, length, full)))
    chunk = {}
    for k, v in out.items():
      v = np.asarray(v)[:rows]
      if use_buckets and length < full and v.ndim >= 2 and v.shape[1] == length:
        pad = [(0, 0), (0, full - length)] + [(0, 0)] * (v.ndim - 2)
        v = np.pad(v, pad)
      chunk[k] = v
    chunks.append(chunk)
  if not chunks:
    return {}
  stacked = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  inverse = np.empty_like(order)
  inverse[order] = np.arange(n)
  return {k: v[inverse] for k, v in stacked.items()}


def evaluate_split(setup: Setup, predict_step: Callable, params: Any,
                   split: SplitData | list[SplitData], config: ml_collections.ConfigDict,
                   out_prefix: str | None = None) -> dict:
  """task.evaluate on one split (or each batch of a list, plus their average)."""
  if isinstance(split, (list, tuple)):
    results = [evaluate_split(setup, predict_step, params, s, config,
                              f"{out_prefix}_batch{i + 1}" if out_prefix else None)
               for i, s in enumerate(split)]
    keys = [k for k, v in results[0].items() if isinstance(v, (int, float))]
    average = {k: float(np.mean([r[k] for r in results])) for k in keys}
    return {"batches": results, "average": average,
            setup.task.primary_metric: average.get(setup.task.primary_metric, 0.0)}
  outputs = predict_split(predict_step, params, split, int(config.eval_batch_size),
                          int(config.bucket_length))
  result = setup.task.evaluate(outputs, split, config)
  if out_prefix and config.write_predictions:
    result["prediction_files"] = [os.path.basename(p) for p in
                                  setup.task.write_predictions(outputs, split, out_prefix)]
  return result


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Fine-tunes, evaluates and exports; returns the eval_results.json content."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2) + "\n")
  setup = build(config, workdir)
  train = setup.splits["train"]
  n_train = train.num_features
  if n_train == 0:
    raise ValueError("no training features (check config.data_dir / max_train_examples)")
  batch_size = min(int(config.batch_size), n_train)
  steps_per_epoch = n_train // batch_size  # drop the remainder: one compiled shape
  total_steps = steps_per_epoch * int(config.num_epochs)
  opt_cfg = dict(optimizer=config.optimizer, learning_rate=config.learning_rate,
                 warmup_steps=int(config.warmup_proportion * total_steps),
                 total_steps=total_steps, weight_decay=config.weight_decay, b1=config.b1,
                 b2=config.b2, eps=config.eps, clip_norm=config.clip_norm,
                 trainable=trainable_patterns(config, setup.bert_config))
  tx, schedule = make_optimizer(opt_cfg)
  params = setup.params
  opt_state = tx.init(params)
  train_step, predict_step = make_steps(setup, tx, schedule)
  logger = finetune_io.MetricsLogger(workdir)
  rng = jax.random.key(int(config.seed) + 1)
  order_rng = np.random.default_rng(int(config.seed))
  dev = setup.splits.get("dev")
  mask = train.features.get("attention_mask")
  lengths = mask.sum(axis=1) if mask is not None else None
  history, best, best_params = [], None, None
  step, t_window, window_steps = 0, time.time(), 0
  t_start = time.time()
  print(f"training: {n_train} features, batch {batch_size}, {steps_per_epoch} steps/epoch, "
        f"{total_steps} steps", flush=True)
  for epoch in range(1, int(config.num_epochs) + 1):
    losses = []
    for idx in epoch_batches(n_train, batch_size, order_rng, lengths,
                             int(config.group_by_length)):
      batch = {k: v[idx] for k, v in train.features.items()}
      if config.bucket_length > 0 and "attention_mask" in batch:
        full = batch["attention_mask"].shape[1]
        batch = trim_batch(batch, trimmed_length(batch["attention_mask"],
                                                 int(config.bucket_length)), full)
      rng, step_rng = jax.random.split(rng)
      params, opt_state, metrics = train_step(params, opt_state, batch, step_rng, step)
      step += 1
      window_steps += 1
      losses.append(metrics["loss"])
      if step % int(config.log_every) == 0 or step == total_steps:
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        # The mean over the logging window, not the last (noisy) batch's loss.
        window = losses[-min(window_steps, len(losses)):]
        metrics["loss"] = float(np.mean(jax.device_get(window)))
        elapsed = time.time() - t_window
        rate = window_steps / max(elapsed, 1e-9)
        eta = (total_steps - step) / max(rate, 1e-9)
        print(f"step {step}/{total_steps} epoch {epoch} loss {metrics['loss']:.4f} "
              f"lr {metrics['learning_rate']:.2e} {rate:.2f} steps/s "
              f"{rate * batch_size:.1f} examples/s ETA {eta:.0f}s", flush=True)
        logger.write(step, {f"train/{k}": v for k, v in metrics.items()} |
                     {"train/steps_per_sec": rate, "train/examples_per_sec": rate * batch_size})
        t_window, window_steps = time.time(), 0
    entry = {"epoch": epoch, "step": step,
             "train_loss": float(np.mean(jax.device_get(losses))) if losses else None}
    if dev is not None and config.eval_every_epoch:
      result = evaluate_split(setup, predict_step, params, dev, config)
      entry["dev"] = finetune_io.scalars(result)
      logger.write(step, {f"dev/{k}": v for k, v in entry["dev"].items()})
      score = result[setup.task.primary_metric]
      print(f"epoch {epoch}: dev {setup.task.primary_metric} {score:.4f}", flush=True)
      if best is None or score > best[1]:
        best = (epoch, score)
        # A real host copy: on CPU device_get can alias the device buffer, which the next
        # (donating) train step reuses.
        best_params = jax.tree.map(lambda x: np.array(x, copy=True), params)
    t_window, window_steps = time.time(), 0  # evaluation time is not training speed
    history.append(entry)
  if best_params is None:  # no dev evaluation: the last epoch is the result
    best = (int(config.num_epochs), None)
    best_params = jax.tree.map(lambda x: np.array(x, copy=True), params)
  results: dict[str, Any] = {"task": config.task, "best_epoch": best[0],
                             "primary_metric": setup.task.primary_metric}
  for split in ("dev", "test"):
    if split in setup.splits:
      results[split] = evaluate_split(setup, predict_step, best_params, setup.splits[split],
                                      config, os.path.join(workdir, f"predictions_{split}"))
  results["history"] = history
  results["train_seconds"] = time.time() - t_start
  with open(os.path.join(workdir, "eval_results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2, sort_keys=True)
    f.write("\n")
  logger.close()
  if config.save_model:
    save_finetuned(setup, best_params, config, os.path.join(workdir, "model"))
  return results


def save_finetuned(setup: Setup, params: Any, config: ml_collections.ConfigDict,
                   model_dir: str) -> None:
  """Native checkpoint + vocab.txt + task.json, everything experiments.predict needs."""
  from biobert_jax.checkpoints import native  # pylint: disable=import-outside-toplevel

  if os.path.exists(model_dir):
    shutil.rmtree(model_dir)
  native.save_native(setup.bert_config, params, model_dir)
  shutil.copyfile(setup.vocab_path, os.path.join(model_dir, "vocab.txt"))
  info = {"task": setup.task.name, "max_seq_length": int(config.max_seq_length),
          "doc_stride": int(config.doc_stride), "lowercase": bool(setup.lowercase),
          "extra_tokens": list(setup.extra_tokens), "dtype": config.dtype}
  info.update(setup.task.export_info(config, setup.splits))
  with open(os.path.join(model_dir, "task.json"), "w", encoding="utf-8") as f:
    json.dump(info, f, indent=2, sort_keys=True)
    f.write("\n")


@dataclasses.dataclass
class Finetuned:
  model_dir: str
  info: dict
  bert_config: BertConfig
  params: Any
  tokenizer: Any


def load_finetuned(path: str | os.PathLike) -> Finetuned:
  """Reads `<workdir>/model/` (or the model dir itself) written by `save_finetuned`."""
  from biobert_jax.checkpoints import native  # pylint: disable=import-outside-toplevel

  path = pathlib.Path(path)
  model_dir = path / "model" if (path / "model" / "task.json").exists() else path
  info_path = model_dir / "task.json"
  if not info_path.exists():
    raise FileNotFoundError(f"{info_path} not found: pass a finetune workdir or its model/ "
                            "subdirectory")
  with open(info_path, encoding="utf-8") as f:
    info = json.load(f)
  bert_config, params = native.load_native(str(model_dir))
  tokenizer = load_tokenizer(model_dir / "vocab.txt", lowercase=bool(info["lowercase"]),
                             extra_tokens=info.get("extra_tokens", ()))
  if tokenizer.vocab_size != bert_config.vocab_size:
    raise ValueError(f"{model_dir}: tokenizer has {tokenizer.vocab_size} ids but the model "
                     f"{bert_config.vocab_size}")
  return Finetuned(str(model_dir), info, bert_config, params, tokenizer)


__all__ = ["run", "build", "load_finetuned", "save_finetuned", "read_vocab"]
