"""What the fine-tuning trainer jits (mesh, optimiser, state shardings, steps), built once
for `trainers.finetune.run` and the planner. The devices' platform picks the runtime: on CPU
gradient + update programs compiled ahead in threads; on TPU and GPU one program.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any
from collections.abc import Callable

import jax
import ml_collections

from biobert_jax import models, runtime as runtime_lib, sharding
from biobert_jax.checkpoints import surgery
from biobert_jax.config import BertConfig
from biobert_jax.runtime import ahead
from biobert_jax.train import optim
from biobert_jax.train import state as state_lib
from biobert_jax.train import step as step_lib
from biobert_jax.trainers.finetune_batches import example_batch

Setup = Any  # trainers.finetune.Setup (task, module, params, splits, bert_config)


def trainable_patterns(config: ml_collections.ConfigDict,
                       bert_config: BertConfig) -> tuple[str, ...]:
  """Patterns added to config.trainable by config.trainable_top_k (>= 0)."""
  if config.trainable_top_k >= 0:
    return surgery.trainable_patterns_top_k(bert_config, int(config.trainable_top_k))
  return ()


def _check_batch_sizes(config: ml_collections.ConfigDict, batch_size: int,
                       mesh: Any) -> None:
  shards = sharding.batch_shard_count(mesh)
  for key, value in (("batch_size", batch_size), ("eval_batch_size", config.eval_batch_size)):
    if int(value) % shards:
      raise ValueError(
          f"config.{key}={value} is not divisible by the {shards} batch shards (data x "
          f"fsdp) of mesh {dict(mesh.shape)}: set config.{key} to a multiple of {shards} "
          f"or change config.mesh")


# The jitted steps of earlier runs in this process, keyed by everything they are a function
# of: a new run's fresh closures would re-trace and re-compile the same programs (the main
# job's 12 fine-tunes share one model and optimiser). Bounded to the newest few.
_STEPS_CACHE: collections.OrderedDict = collections.OrderedDict()
_STEPS_CACHE_SIZE = 4


def _steps(setup: Setup, opt_spec: dict, tx: Any, schedule: Callable, shardings: Any,
           mesh: Any, compiler_options: dict | None,
           rt: runtime_lib.Runtime) -> tuple[Callable, Callable]:
  """`_make_steps`, reused when an earlier run had the same key: task adapter, flax module,
  optimiser spec, mesh, XLA options and runtime (seeds, data and params are inputs)."""
  key = (setup.task, setup.module, tuple(sorted(opt_spec.items())), mesh,
         tuple(sorted((compiler_options or {}).items())), rt)
  if key in _STEPS_CACHE:
    _STEPS_CACHE.move_to_end(key)
    return _STEPS_CACHE[key]
  steps = _make_steps(setup, tx, schedule, shardings, mesh, compiler_options,
                      opt_spec["trainable"], rt)
  _STEPS_CACHE[key] = steps
  while len(_STEPS_CACHE) > _STEPS_CACHE_SIZE:
    _STEPS_CACHE.popitem(last=False)
  return steps


def _make_steps(setup: Setup, tx: Any, schedule: Callable, shardings: Any, mesh: Any,
                compiler_options: dict | None, trainable: tuple[str, ...],
                rt: runtime_lib.Runtime) -> tuple[Callable, Callable]:
  """(train_step(state, batch), predict_step(params, batch)), through
  `step.make_finetune_step`; on CPU (rt.compile_ahead) predict compiles every shape ahead."""
  task, module = setup.task, setup.module

  def loss_fn(params, batch, rng):
    outputs = module.apply({"params": params}, **task.model_inputs(batch),
                           deterministic=False, rngs={"dropout": rng})
    return task.loss(outputs, batch)

  def predict(params, batch):
    outputs = module.apply({"params": params}, **task.model_inputs(batch), deterministic=True)
    return task.predict_outputs(outputs)

  train_step = step_lib.make_finetune_step(rt.traced(loss_fn), tx, schedule, shardings, mesh,
                                          trainable=trainable,
                                          compiler_options=compiler_options,
                                          split=rt.split_train_step)
  predict_step = step_lib.jit_eval_step(predict, shardings["params"], mesh,
                                        compiler_options=compiler_options)
  if rt.compile_ahead:  # wrapped so that run() can compile every batch shape ahead
    predict_step = ahead.CompiledByShape(predict_step)
  return train_step, predict_step


@dataclasses.dataclass
class Program:
  """What `run` jits, built once for the trainer and the planner (biobert_jax.plan)."""
  mesh: Any
  runtime: runtime_lib.Runtime
  opt_spec: dict
  tx: Any
  schedule: Callable
  specs: Any
  abstract_params: Any
  abstract_state: Any
  shardings: Any
  train_step: Callable
  predict_step: Callable

  def abstract_batch(self, setup: Setup, batch_size: int, length: int) -> dict[str, Any]:
    """A training batch of `length` pieces, as sharded ShapeDtypeStructs."""
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype,
                                    sharding=sharding.batch_sharding(self.mesh))
            for k, v in example_batch(setup.splits["train"], batch_size, length).items()}


def build_program(setup: Setup, config: ml_collections.ConfigDict, batch_size: int,
                  total_steps: int, devices: list[Any] | None = None,
                  compiler_options: dict | None = None) -> Program:
  """Mesh, optimiser, state shardings and the jitted steps for `devices` (default: all;
  abstract TPU devices for the planner). The devices' platform picks the runtime."""
  devices = list(jax.devices() if devices is None else devices)
  rt = runtime_lib.for_devices(devices)
  mesh = sharding.make_mesh(config.mesh, devices)
  _check_batch_sizes(config, batch_size, mesh)
  extra_trainable = trainable_patterns(config, setup.bert_config)
  opt_spec = optim.optimizer_spec(config, total_steps, extra_trainable=extra_trainable)
  tx, schedule = optim.make_optimizer(opt_spec)
  specs = models.logical_axes(setup.module, seq_len=min(16, int(config.max_seq_length)))
  abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                 setup.params)
  abstract_state, shardings = state_lib.state_shardings(abstract_params, specs, tx, mesh)
  train_step, predict_step = _steps(setup, opt_spec, tx, schedule, shardings, mesh,
                                    compiler_options, rt)
  return Program(mesh, rt, opt_spec, tx, schedule, specs, abstract_params, abstract_state,
                 shardings, train_step, predict_step)


__all__ = ["Program", "build_program", "trainable_patterns"]
