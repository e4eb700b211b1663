"""Pre-training as a library: `train(config, workdir)` (experiments/pretrain.py is its main)."""
from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from biobert_jax import checkpoints as checkpoint_formats
from biobert_jax import fs, locking, models, runtime as runtime_lib, sharding, tree
from biobert_jax.checkpoints import native
from biobert_jax.checkpoints.manager import CheckpointManager
from biobert_jax.config import BertConfig
from biobert_jax.configs import pretrain as pretrain_configs
from biobert_jax.train import loop, losses, metrics_writer, optim
from biobert_jax.train import state as state_lib
from biobert_jax.train import step as step_lib
from biobert_jax.trainers import auto_mesh, pretrain_data, workdir as workdir_lib
from data_pipeline.tokenization import load_tokenizer



def vocab_size_of(vocab_path: str, lowercase: bool = False) -> int:
  """Ids in the tokenizer for `vocab_path` (WordPiece vocab.txt or SentencePiece .model)."""
  return load_tokenizer(vocab_path, lowercase=lowercase).vocab_size


def model_config(config: ml_collections.ConfigDict, vocab_size: int) -> BertConfig:
  """BertConfig from the preset name, the size overrides and the vocabulary."""
  overrides = {"vocab_size": vocab_size,
               "max_position_embeddings": max(512, int(config.max_seq_length))}
  for field, key in (("hidden_size", "hidden_size"), ("num_hidden_layers", "num_layers"),
                     ("num_attention_heads", "num_heads"),
                     ("intermediate_size", "intermediate_size")):
    if config[key]:
      overrides[field] = int(config[key])
  if config.hidden_size and not config.intermediate_size:
    overrides["intermediate_size"] = 4 * int(config.hidden_size)
  return BertConfig.preset(config.model, **overrides)


def load_init_checkpoint(path: str, vocab_size: int) -> tuple[BertConfig, dict[str, Any]]:
  """Encoder (+ pre-training heads when present) from any checkpoint format.

  Raises:
    ValueError: when the checkpoint's vocabulary size differs from the vocab file's.
  """
  ck_config, ck_params = checkpoint_formats.load(path)
  if ck_config.vocab_size != vocab_size:
    raise ValueError(f"init_checkpoint {path}: vocab_size {ck_config.vocab_size} does not "
                     f"match config.vocab_path ({vocab_size} pieces)")
  taken = {k: v for k, v in ck_params.items() if k in ("encoder", "cls")}
  if "encoder" not in taken:
    raise ValueError(f"init_checkpoint {path}: no 'encoder' params "
                     f"(found {sorted(ck_params)})")
  return ck_config, taken


def _merge_init(fresh: dict, loaded: dict, path: str) -> dict:
  """Loaded subtrees ("encoder", and "cls" when the checkpoint has it) replace fresh ones;
  every leaf of a loaded subtree must exist in the model with the same shape."""
  params, merged = tree.merge_params(
      fresh, loaded, take=lambda p: p.split("/", 1)[0] in loaded,
      mismatch_message=lambda p, want, got: (f"init_checkpoint {path}: {p} has shape "
                                             f"{list(got)}, the model wants {list(want)}"))
  missing = [p for p in merged.new if p.split("/", 1)[0] in loaded]
  if merged.dropped or missing:
    raise ValueError(f"init_checkpoint {path}: its params have a different structure from "
                     f"the model's (not in the model: {sorted(merged.dropped)[:5]}; "
                     f"missing: {missing[:5]})")
  return params


@dataclasses.dataclass
class Program:
  """What `train` jits, built once for the trainer and the planner (biobert_jax.plan)."""
  model: Any
  mesh: Any
  runtime: runtime_lib.Runtime
  tx: Any
  schedule: Callable
  specs: Any
  abstract_state: Any
  shardings: Any
  train_step: Callable  # jitted train_step(state, batch) -> (state, metrics)

  def abstract_args(self, config: ml_collections.ConfigDict) -> tuple[Any, Any]:
    """(state, global batch) as sharded ShapeDtypeStructs: what the step is lowered with."""
    return (state_lib.with_shardings(self.abstract_state, self.shardings),
            abstract_batch(config, sharding.batch_sharding(self.mesh)))


def abstract_batch(config: ml_collections.ConfigDict, batch_sharding: Any) -> dict[str, Any]:
  """BERT's pre-training features for one global batch (the pipeline's names and dtypes)."""
  b, l = int(config.batch_size), int(config.max_seq_length)
  p = int(config.max_predictions_per_seq)
  shapes = {"input_ids": ((b, l), np.int32), "input_mask": ((b, l), np.int32),
            "segment_ids": ((b, l), np.int32), "masked_lm_positions": ((b, p), np.int32),
            "masked_lm_ids": ((b, p), np.int32), "masked_lm_weights": ((b, p), np.float32),
            "next_sentence_labels": ((b,), np.int32)}
  return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sharding)
          for k, (shape, dtype) in shapes.items()}


def build_program(config: ml_collections.ConfigDict, bert_config: BertConfig,
                  devices: Sequence[Any] | None = None,
                  compiler_options: dict | None = None) -> Program:
  """Model, mesh, optimiser, state shardings and the jitted step, for `devices` (default:
  all; abstract TPU devices for the planner). The devices' platform picks the runtime."""
  devices = list(jax.devices() if devices is None else devices)
  rt = runtime_lib.for_devices(devices)
  model = models.BertForPreTraining(bert_config, dtype=models.compute_dtype(config.dtype),
                                    scan_layers=config.scan_layers, remat=config.remat)
  mesh = sharding.make_mesh(config.mesh, devices)
  if config.batch_size % sharding.batch_shard_count(mesh):
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by the "
                     f"{sharding.batch_shard_count(mesh)} batch shards of mesh {mesh.shape}")
  tx, schedule = optim.optimizer_from_config(config, config.total_steps)
  specs = models.logical_axes(model, seq_len=16)
  abstract_params = models.param_shapes(model)
  abstract_state, shardings = state_lib.state_shardings(abstract_params, specs, tx, mesh)
  step = step_lib.make_train_step(model, tx, schedule, grad_accum_steps=config.grad_accum_steps,
                                  mesh=mesh, trainable=optim.trainable_from_config(config),
                                  nsp_weight=float(config.get("nsp_weight", 1.0)))
  train_step = step_lib.jit_train_step(rt.traced(step), shardings, mesh,
                                       compiler_options=compiler_options)
  return Program(model, mesh, rt, tx, schedule, specs, abstract_state, shardings, train_step)


def _eval_fn(model: Any, params_shardings: Any, mesh: Any, eval_batches: list) -> Any:
  if not eval_batches:
    return None
  step = step_lib.jit_eval_step(step_lib.make_eval_step(model), params_shardings, mesh)
  global_batches = [sharding.global_batch_from_process_local(b, mesh) for b in eval_batches]

  def evaluate(params, at_step):
    del at_step
    # The per-batch sums are a handful of scalars: add them on the host (float64) rather
    # than dispatching one more small multi-device computation per batch.
    total = None
    for b in global_batches:
      sums = {k: np.asarray(v, np.float64) for k, v in jax.device_get(step(params, b)).items()}
      total = sums if total is None else {k: total[k] + sums[k] for k in total}
    return {k: float(v) for k, v in losses.metrics_from_sums(total).items()}

  return evaluate


def _log_line(step: int, total: int, row: dict, eta: str) -> str:
  return (f"step {step}/{total} loss {row['loss']:.4f} mlm_acc {row['mlm_accuracy']:.3f} "
          f"nsp_acc {row['nsp_accuracy']:.3f} | {row['tokens_per_sec']:.0f} tokens/s "
          f"(non-pad) | lr {row['learning_rate']:.2e} | ETA {eta}")


def train(config: ml_collections.ConfigDict, workdir: str) -> loop.LoopResult:
  """Runs (or resumes) pre-training in `workdir`; exports params at the end.

  The primary process locks the workdir for the run (biobert_jax/locking); when another
  run holds it, every process raises locking.LockHeld before anything is written.
  """
  pretrain_configs.validate(config)
  workdir = fs.abspath(workdir)
  with locking.hold_for_job(workdir):
    return _train(config, workdir)


def _train(config: ml_collections.ConfigDict, workdir: str) -> loop.LoopResult:
  vocab_size = vocab_size_of(config.vocab_path, config.lowercase)
  init_params = None
  if config.init_checkpoint:
    bert_config, init_params = load_init_checkpoint(config.init_checkpoint, vocab_size)
  else:
    bert_config = model_config(config, vocab_size)
  # config.mesh.auto: the axes chosen over these devices (docs/planning.md).
  config, mesh_choice = auto_mesh.resolve(config, workdir, jax.devices(), bert=bert_config)
  program = build_program(config, bert_config)
  model, mesh, tx, specs = program.model, program.mesh, program.tx, program.specs
  abstract_state, shardings = program.abstract_state, program.shardings
  # Nothing is written before this check: a re-run with another config stops here.
  # total_steps may grow (extending a run); eval_* only change what is measured.
  workdir_lib.check_or_record_config(workdir, config,
                                     ignore=("total_steps", "eval_every", "eval_steps"),
                                     write=jax.process_index() == 0)
  auto_mesh.record(workdir, mesh_choice, write=jax.process_index() == 0)
  if jax.process_index() == 0:
    with workdir_lib.atomic_path(fs.join(workdir, native.CONFIG_NAME)) as tmp:
      bert_config.to_json_file(tmp)
    with workdir_lib.atomic_path(fs.join(workdir, "vocab.txt")) as tmp:
      fs.copy(config.vocab_path, tmp)

  checkpoints = CheckpointManager(fs.join(workdir, native.CHECKPOINTS_DIR),
                                  keep=config.keep_checkpoints, keep_every=config.keep_every,
                                  async_save=config.async_checkpoints)
  batches = pretrain_data.make_train_batches(config, vocab_size, jax.process_index(),
                                             jax.process_count())
  latest = checkpoints.latest_step()
  if latest is not None:
    # The newest whole step (a damaged one is said and set aside; the one before is used).
    state, data_state = checkpoints.restore(
        None, state_lib.with_shardings(abstract_state, shardings))
    latest = int(jax.device_get(state["step"]))
    batches.set_state(dict(data_state, process_index=jax.process_index()))
    logging.info("resumed from %s step %d", checkpoints.directory, latest)
  elif init_params is not None:
    fresh = jax.device_get(models.init_params(model, jax.random.PRNGKey(config.seed)))
    params = _merge_init(fresh, init_params, config.init_checkpoint)
    if config.scan_layers:
      params = checkpoint_formats.stack_layers(params)
    state, shardings = state_lib.state_from_params(params, specs, tx, mesh, config.seed)
  else:
    state, shardings = state_lib.create_state(
        lambda rng: models.init_params(model, rng), specs, tx, mesh, config.seed)
  start_step = int(jax.device_get(state["step"]))

  train_step = program.train_step
  eval_batches = pretrain_data.make_eval_batches(config, vocab_size, jax.process_index(),
                                                 jax.process_count())
  if jax.process_count() > 1:  # every process must run the same number of eval steps.
    n = int(np.min(multihost_utils.process_allgather(np.asarray(len(eval_batches)))))
    eval_batches = eval_batches[:n]
  tb_dir = fs.join(workdir, "tensorboard") if config.tensorboard else None
  writer = metrics_writer.MetricsWriter(workdir, "metrics", tensorboard_dir=tb_dir)
  eval_writer = metrics_writer.MetricsWriter(workdir, "eval_metrics", tensorboard_dir=tb_dir,
                                             tag_prefix="")
  writer.truncate_after(start_step)
  eval_writer.truncate_after(start_step)
  preemption = loop.PreemptionFlag().install()
  try:
    result = loop.run(
        state=state, train_step=train_step, batches=batches,
        to_global=lambda b: sharding.global_batch_from_process_local(b, mesh),
        data_state=batches.get_state, checkpoints=checkpoints, writer=writer,
        config=loop.LoopConfig(total_steps=config.total_steps, log_every=config.log_every,
                               checkpoint_every=config.checkpoint_every,
                               eval_every=config.eval_every),
        eval_fn=_eval_fn(model, shardings["params"], mesh, eval_batches),
        eval_writer=eval_writer, preemption=preemption,
        log_fn=lambda line: print(line, flush=True), log_line=_log_line)
  finally:
    preemption.uninstall()
    checkpoints.close()
    writer.close()
    eval_writer.close()
  if not result.preempted:
    export(workdir, bert_config, config.vocab_path)
  return result


def export(workdir: str, bert_config: BertConfig, vocab_path: str) -> str:
  """Final params of the workdir's latest checkpoint -> workdir/export (native + vocab)."""
  out = fs.join(workdir, "export")
  manager = CheckpointManager(fs.join(workdir, native.CHECKPOINTS_DIR), read_only=True)
  try:
    _, params = manager.restore_params()
  finally:
    manager.close()
  # Written under a temporary name and renamed when complete: a failed export never
  # leaves an export/ that fine-tuning would take for a finished one.
  primary = jax.process_index() == 0
  with workdir_lib.atomic_path(out, primary=primary) as tmp:
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("export: tmp dir cleared")
    native.save_native(bert_config, params, tmp)
    if primary:
      fs.copy(vocab_path, fs.join(tmp, "vocab.txt"))
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("export: written")
  return out
