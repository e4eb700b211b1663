"""The fine-tuning trainer shared by NER, RE, QA and multi-task NER: `run(config, workdir)`.

Resumable and mesh-sharded like pre-training; what it writes: docs/finetuning.md.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any
from collections.abc import Callable

import jax
import ml_collections

from biobert_jax import checkpoints as checkpoints_lib
from biobert_jax import fs, locking, models, sharding
from biobert_jax.checkpoints import head_labels, surgery
from biobert_jax.checkpoints.manager import CheckpointManager
from biobert_jax.config import BertConfig
from biobert_jax.configs import finetune as finetune_configs
from biobert_jax.tasks import Task, TaskData, get_task
from biobert_jax.train import loop, metrics_writer
from biobert_jax.train import state as state_lib
from biobert_jax.trainers import auto_mesh, hf_export, model_card
from biobert_jax.trainers import model_dir as model_dir_lib
from biobert_jax.trainers import workdir as workdir_lib
from biobert_jax.trainers.finetune_batches import compile_ahead, train_batches
from biobert_jax.trainers.finetune_program import build_program
from biobert_jax.trainers.finetune_eval import decode_split, evaluate_split, score_split
from biobert_jax.trainers.validation import check_splits, split_notes
from data_pipeline.tokenization import load_tokenizer

CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "checkpoints_best"
STAGING_DIR = "results.tmp"
RESULTS_NAME = "eval_results.json"


@dataclasses.dataclass
class Setup:
  """Everything built before training starts (nothing of it is written to disk)."""
  task: Task
  tokenizer: Any
  bert_config: BertConfig
  module: Any
  params: Any
  data: TaskData
  vocab_path: str
  lowercase: bool
  extra_tokens: list[str]
  surgery_report: Any = None

  @property
  def splits(self) -> dict[str, Any]:
    return self.data.splits


def build(config: ml_collections.ConfigDict) -> Setup:
  """Tokenizer, data, model and grafted params."""
  task = get_task(config.task)
  bert_config, pretrained = (checkpoints_lib.load(config.init_checkpoint)
                             if config.init_checkpoint else (None, None))
  vocab_path = model_dir_lib.resolve_vocab(config)
  lowercase = model_dir_lib.resolve_lowercase(config, vocab_path)
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
  data = task.load(config, tokenizer)
  module = task.make_model(bert_config, config, data.labels,
                           models.compute_dtype(config.dtype))
  params = models.init_params(module, jax.random.key(int(config.seed)),
                              seq_len=min(16, int(config.max_seq_length)))
  report = None
  if pretrained is not None:
    init_heads = config.get("init_heads", "fitting")
    heads = [k for k in params if k != "encoder"] if init_heads != "fresh" else []
    params, report = surgery.graft_encoder(
        params, pretrained, reinit=tuple(config.reinit), keep_fitting=heads,
        head_labels=task_head_labels(config.task, data.labels),
        checkpoint_labels=head_labels.checkpoint_labels(config.init_checkpoint),
        keep_unnamed=init_heads == "fitting_unnamed")
    print(report.format(), flush=True)
  params = jax.device_get(params)
  return Setup(task, tokenizer, bert_config, module, params, data, vocab_path, lowercase,
               extra, report)


def task_head_labels(task: str, labels: list[str]) -> dict[str, list[str]]:
  """{head scope: label names} of a task model's labelled heads (QA has none)."""
  if task == "multi_ner":
    from biobert_jax.tasks.multi_ner import split_labels
    return split_labels(labels)
  return {"classifier": list(labels)} if labels else {}


def discard_checkpoints(workdir: str) -> None:
  """Deletes a finished run's training checkpoints (its results, predictions and exported
  model stay). A study of many fine-tunes keeps what it reports, not ~0.5 GB of optimizer
  state per run; a finished run is never resumed, so nothing needs them."""
  if not fs.exists(fs.join(workdir, RESULTS_NAME)):
    raise ValueError(f"{workdir} has no {RESULTS_NAME}: its checkpoints are still needed "
                     "to resume it")
  for name in (CHECKPOINTS_DIR, BEST_DIR):
    fs.remove(fs.join(workdir, name))


def _fresh_tracker() -> dict:
  return {"epoch_loss_sum": 0.0, "epoch_steps": 0, "history": [], "best": None}


def _publish(stage: str, workdir: str) -> None:
  """Moves every staged result into the workdir, eval_results.json last."""
  names = sorted(fs.listdir(stage), key=lambda n: (n == RESULTS_NAME, n))
  for name in names:
    fs.commit(fs.join(stage, name), fs.join(workdir, name))
  fs.remove(stage)


def run(config: ml_collections.ConfigDict, workdir: str, *,
        compiler_options: dict | None = None,
        devices: list[jax.Device] | None = None) -> dict:
  """Fine-tunes (or resumes), evaluates and exports; returns the eval_results.json content.

  The workdir is locked for the run (biobert_jax/locking): a second run on it raises
  locking.LockHeld naming the holder, before anything is read or written.

  Args:
    config: a biobert_jax/configs/finetune.py config.
    workdir: the run's directory (resumed when it holds this config's checkpoints).
    compiler_options: XLA options for the jitted steps (tests pass
      {"xla_backend_optimization_level": 0} to compile faster).
    devices: the devices config.mesh lays out (default: all).

  Returns:
    The results, or {"preempted": True, "step": s} when SIGTERM stopped training (a
    checkpoint was saved; re-running the same command continues).
  """
  finetune_configs.validate(config, device_count=len(devices) if devices else None)
  workdir = fs.abspath(workdir)
  with locking.hold(workdir):
    return _run(config, workdir, compiler_options, devices)


def _run(config: ml_collections.ConfigDict, workdir: str, compiler_options: dict | None,
         devices: list[jax.Device] | None) -> dict:
  t_run = time.time()
  setup = build(config)
  check_splits(setup.splits, config)  # empty dev/test dropped (and said) before training
  train = setup.splits["train"]
  n_train = train.num_features
  if n_train == 0:
    raise ValueError("no training features (check config.data_dir / max_train_examples)")
  batch_size = min(int(config.batch_size), n_train)
  if batch_size < int(config.batch_size):
    print(f"batch_size reduced from {config.batch_size} to {batch_size}: the training set "
          f"has only {n_train} features", flush=True)
  steps_per_epoch = n_train // batch_size  # drop the remainder: one compiled shape
  total_steps = steps_per_epoch * int(config.num_epochs)
  # config.mesh.auto: the axes chosen over these devices (docs/planning.md).
  config, mesh_choice = auto_mesh.resolve(
      config, workdir, devices or jax.devices(), bert=setup.bert_config, setup=setup,
      batch_size=batch_size, eval_batch_size=int(config.eval_batch_size))
  program = build_program(setup, config, batch_size, total_steps, devices, compiler_options)
  mesh, tx, specs = program.mesh, program.tx, program.specs
  abstract_params, abstract_state = program.abstract_params, program.abstract_state
  shardings = program.shardings

  # Nothing is written before this check: a re-run with another config stops here.
  # export_hf only adds an export at the end: a re-run may switch it.
  workdir_lib.check_or_record_config(workdir, config, ignore=("export_hf",))
  auto_mesh.record(workdir, mesh_choice, write=jax.process_index() == 0)
  checkpoints = CheckpointManager(fs.join(workdir, CHECKPOINTS_DIR),
                                  keep=int(config.keep_checkpoints), async_save=True)
  best_checkpoints = CheckpointManager(fs.join(workdir, BEST_DIR), keep=2,
                                       async_save=False)
  tracker = _fresh_tracker()
  # The best epoch's dev decoding, kept in memory so that the final evaluation scores it
  # instead of predicting dev again (the restored best params are the same values). Not
  # checkpointed: a resumed run predicts dev again and gets the same result.
  best_dev: dict[str, Any] = {}
  latest = checkpoints.latest_step()
  if latest is not None:
    # The newest whole step (a damaged one is said and set aside; the one before is used).
    state, data_state = checkpoints.restore(
        None, state_lib.with_shardings(abstract_state, shardings))
    latest = int(jax.device_get(state["step"]))
    tracker = data_state["tracker"]
    for s in best_checkpoints.all_steps():
      if s > latest:  # saved after the checkpoint we resume from: it will be redone
        best_checkpoints.delete(s)
    print(f"resumed from {checkpoints.directory} step {latest}", flush=True)
  else:
    state, shardings = state_lib.state_from_params(setup.params, specs, tx, mesh,
                                                   int(config.seed))
  # After the resume: a checkpoint that does not fit this model stops the run before it.
  if setup.surgery_report is not None:
    with workdir_lib.atomic_path(fs.join(workdir, "surgery_report.json")) as tmp:
      setup.surgery_report.save(tmp)
  start_step = int(jax.device_get(state["step"]))
  train_step, predict_step = program.train_step, program.predict_step
  announced = program.runtime.compile_ahead and compile_ahead(
      train_step, predict_step, state, setup.splits, config, batch_size,
                            steps_per_epoch, start_step, total_steps,
                            sharding.batch_sharding(mesh))
  if announced:
    print(announced, flush=True)

  task, dev = setup.task, setup.splits.get("dev")
  tb_dir = fs.join(workdir, "tensorboard") if config.tensorboard else None
  writer = metrics_writer.MetricsWriter(workdir, "metrics", tensorboard_dir=tb_dir)
  eval_writer = metrics_writer.MetricsWriter(workdir, "eval_metrics", tensorboard_dir=tb_dir)
  writer.truncate_after(start_step)
  eval_writer.truncate_after(start_step)

  def observe(step: int, host: dict) -> None:
    del step
    tracker["epoch_loss_sum"] += host["loss"]
    tracker["epoch_steps"] += 1

  def end_of_epoch(params: Any, step: int) -> dict:
    if step % steps_per_epoch:
      return {}
    epoch = step // steps_per_epoch
    entry = {"epoch": epoch, "step": step,
             "train_loss": (tracker["epoch_loss_sum"] / tracker["epoch_steps"]
                            if tracker["epoch_steps"] else None)}
    tracker["epoch_loss_sum"], tracker["epoch_steps"] = 0.0, 0
    logged = {}
    if dev is not None and config.eval_every_epoch:
      decoded = decode_split(task, predict_step, params, dev, config)
      result = score_split(task, decoded, dev, config)
      entry["dev"] = logged = model_dir_lib.scalars(result)
      score = result[task.primary_metric]
      print(f"epoch {epoch}: dev {task.primary_metric} {score:.4f}", flush=True)
      best = tracker["best"]
      if best is None or score > best["score"]:
        best_checkpoints.save(step, {"params": params}, {"epoch": epoch, "score": score})
        tracker["best"] = {"epoch": epoch, "step": step, "score": score}
        best_dev.clear()
        best_dev.update(step=step, decoded=decoded)
    tracker["history"].append(entry)
    return logged

  def log_line(step: int, total: int, row: dict, eta: str) -> str:
    epoch = -(-step // steps_per_epoch)
    others = " ".join(f"{k} {v:.4f}" for k, v in row.items()
                      if k not in ("loss", "learning_rate", "tokens_per_sec", "grad_norm"))
    return (f"step {step}/{total} epoch {epoch} loss {row['loss']:.4f} {others} | "
            f"{row['tokens_per_sec']:.0f} tokens/s | lr {row['learning_rate']:.2e} | "
            f"ETA {eta}")

  print(f"training: {n_train} features, batch {batch_size}, {steps_per_epoch} steps/epoch, "
        f"{total_steps} steps, mesh {dict(mesh.shape)}", flush=True)
  t_start = time.time()
  batch_sharding = sharding.batch_sharding(mesh)
  preemption = loop.PreemptionFlag().install()
  try:
    result = loop.run(
        state=state, train_step=train_step,
        batches=train_batches(train, batch_size, steps_per_epoch, int(config.seed),
                              start_step, int(config.bucket_length),
                              int(config.group_by_length)),
        to_global=lambda b: jax.device_put(b, batch_sharding),
        data_state=lambda: {"tracker": copy.deepcopy(tracker)},
        checkpoints=checkpoints, writer=writer,
        config=loop.LoopConfig(
            total_steps=total_steps, log_every=int(config.log_every),
            checkpoint_every=int(config.checkpoint_every),
            boundaries=frozenset(range(steps_per_epoch, total_steps + 1, steps_per_epoch)),
            eval_prefix="dev_"),
        eval_fn=end_of_epoch, eval_writer=eval_writer, preemption=preemption,
        log_fn=lambda line: print(line, flush=True), log_line=log_line, observe=observe)
  finally:
    preemption.uninstall()
    checkpoints.close()
    writer.close()
    eval_writer.close()
  try:
    if result.preempted:
      print(f"preempted at step {result.final_step}: checkpoint saved; re-run the same "
            "command to continue", flush=True)
      return {"preempted": True, "step": result.final_step}
    best = tracker["best"]
    if best is not None:
      target = {"params": state_lib.with_shardings(abstract_params, shardings["params"])}
      restored, _ = best_checkpoints.restore(best["step"], target)
      params, best_epoch = restored["params"], best["epoch"]
      dev_decoded = best_dev.get("decoded") if best_dev.get("step") == best["step"] else None
    else:  # no dev evaluation: the last epoch is the result
      params, best_epoch = result.state["params"], int(config.num_epochs)
      dev_decoded = None
    return _finish(setup, config, workdir, predict_step, params, best_epoch,
                   tracker["history"], time.time() - t_start, t_run, dev_decoded)
  finally:
    best_checkpoints.close()
    for step in (train_step, predict_step):
      if hasattr(step, "cancel_pending"):  # the CPU runtime's compiled-ahead steps
        step.cancel_pending()


def _finish(setup: Setup, config: ml_collections.ConfigDict, workdir: str,
            predict_step: Callable, params: Any, best_epoch: int, history: list,
            train_seconds: float, t_run: float, dev_decoded: Any = None) -> dict:
  """Final evaluation, predictions and model, staged and then published together.

  `train_seconds` is the training loop (dev evaluations included); `run_seconds` is the
  whole call from `t_run` (data, model build, compiles, training, final evaluation and
  model export): what a user waits for, the figure end-to-end comparisons use.
  `dev_decoded` is the best epoch's dev decoding when the loop still holds it."""
  stage = fs.join(workdir, STAGING_DIR)
  fs.remove(stage)
  fs.makedirs(stage)
  task = setup.task
  results: dict[str, Any] = {"task": config.task, "best_epoch": best_epoch,
                             "primary_metric": task.primary_metric,
                             **split_notes(setup.splits)}
  try:
    for split in ("dev", "test"):
      if split not in setup.splits:
        continue
      data, prefix = setup.splits[split], fs.join(stage, f"predictions_{split}")
      if split == "dev" and dev_decoded is not None:
        results[split] = score_split(task, dev_decoded, data, config, prefix)
      else:
        results[split] = evaluate_split(task, predict_step, params, data, config, prefix)
    results["history"] = history
    results["train_seconds"] = train_seconds
    if config.save_model:
      info = {"task": task.name, "max_seq_length": int(config.max_seq_length),
              "doc_stride": int(config.doc_stride), "lowercase": bool(setup.lowercase),
              "extra_tokens": list(setup.extra_tokens), "dtype": config.dtype}
      info.update(task.export_info(config, setup.data.labels))
      info = hf_export.export_info(info)
      model_dir_lib.save_finetuned(fs.join(stage, "model"), setup.bert_config, params,
                                   setup.vocab_path, info)
    results["run_seconds"] = time.time() - t_run
    if config.save_model:
      card = dict(config=workdir_lib.config_as_json(config), results=results)
      model_card.write_card(fs.join(stage, "model"), info, **card)
      if config.get("export_hf", False):
        hf_export.export_model_dir(fs.join(stage, "model"), fs.join(stage, "model_hf"),
                                   **card)
    workdir_lib.write_json(fs.join(stage, RESULTS_NAME), results)
  except BaseException:
    fs.remove(stage)  # nothing half-done ever reaches the workdir
    raise
  _publish(stage, workdir)
  return results


__all__ = ["run", "build", "discard_checkpoints", "decode_split", "score_split", "evaluate_split"]
