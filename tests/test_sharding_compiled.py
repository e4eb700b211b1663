"""The compiled per-device programs really shard: read off the partitioned HLO.

The mesh-equivalence tests compare numbers, which stay right when every device computes
the whole batch; these read what each device runs. Pre-training and fine-tuning (NER)
train steps are built as the trainers build them, compiled (not run) on 8 host devices
for data=8, fsdp=8, 2x2x2 and tensor=8, and checked with biobert_jax.plan.hlo.

Sizes are picked so that shapes identify themselves: global batch 96 and length 40 equal
no weight dimension, 8 heads of 4 and an MLP of 64 split 8 ways under tensor.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import pytest

from biobert_jax import models, sharding
from biobert_jax.config import BertConfig
from biobert_jax.plan import hlo
from biobert_jax.tasks import get_task
from biobert_jax.train import optim
from biobert_jax.train import state as state_lib
from biobert_jax.train import step as step_lib
from experiments.configs import pretrain as pretrain_configs

BATCH, LENGTH, PREDICTIONS, LABELS = 96, 40, 6, 5
BERT = BertConfig(vocab_size=304, hidden_size=32, num_hidden_layers=2, num_attention_heads=8,
                  intermediate_size=64, max_position_embeddings=64)
MESHES = {"data": (8, 1, 1), "fsdp": (1, 8, 1), "2x2x2": (2, 2, 2), "tensor": (1, 1, 8)}
FAST = {"xla_backend_optimization_level": 0}  # codegen only: the HLO is the same


def _abstract(shapes: dict) -> dict:
  return {k: jax.ShapeDtypeStruct(s, d) for k, (s, d) in shapes.items()}


def _state(model, tx, mesh):
  """(abstract state, state shardings) as the trainers derive them."""
  specs = models.logical_axes(model, seq_len=16)
  return state_lib.state_shardings(models.param_shapes(model), specs, tx, mesh)


def _tx():
  config = pretrain_configs.get_config("tiny")
  return optim.optimizer_from_config(config, 100)


@functools.cache
def pretrain_program(mesh_shape: tuple[int, int, int], scan_layers: bool = False,
                     remat: bool = False):
  """The pre-training step, as trainers/pretrain.py jits it."""
  mesh = sharding.make_mesh(dict(zip(sharding.MESH_AXES, mesh_shape)),
                            jax.devices()[:8] if mesh_shape != (1, 1, 1) else jax.devices()[:1])
  model = models.BertForPreTraining(BERT, scan_layers=scan_layers, remat=remat)
  tx, schedule = _tx()
  abstract_state, shardings = _state(model, tx, mesh)
  step = step_lib.jit_train_step(step_lib.make_train_step(model, tx, schedule, mesh=mesh),
                                 shardings, mesh, compiler_options=FAST)
  i32 = jnp.int32
  batch = _abstract({
      "input_ids": ((BATCH, LENGTH), i32), "input_mask": ((BATCH, LENGTH), i32),
      "segment_ids": ((BATCH, LENGTH), i32),
      "masked_lm_positions": ((BATCH, PREDICTIONS), i32),
      "masked_lm_ids": ((BATCH, PREDICTIONS), i32),
      "masked_lm_weights": ((BATCH, PREDICTIONS), jnp.float32),
      "next_sentence_labels": ((BATCH,), i32)})
  return step.lower(abstract_state, batch).compile()


@functools.cache
def finetune_program(mesh_shape: tuple[int, int, int]):
  """The fine-tuning gradient program (NER), as trainers/finetune.py jits it."""
  mesh = sharding.make_mesh(dict(zip(sharding.MESH_AXES, mesh_shape)),
                            jax.devices()[:8] if mesh_shape != (1, 1, 1) else jax.devices()[:1])
  task = get_task("ner")
  module = task.make_model(BERT, None, [str(i) for i in range(LABELS)], jnp.float32)
  tx, _ = _tx()
  abstract_state, shardings = _state(module, tx, mesh)

  def loss_fn(params, batch, rng):
    outputs = module.apply({"params": params}, **task.model_inputs(batch),
                           deterministic=False, rngs={"dropout": rng})
    return task.loss(outputs, batch)

  step = step_lib.jit_grad_step(step_lib.make_loss_grad_step(loss_fn), shardings, mesh,
                                compiler_options=FAST)
  batch = _abstract({k: ((BATCH, LENGTH), jnp.int32) for k in
                     ("input_ids", "token_type_ids", "attention_mask", "labels")})
  return step.lower(abstract_state, batch).compile()


PROGRAMS = {"pretrain": pretrain_program, "finetune": finetune_program}


@pytest.mark.parametrize("kind", sorted(PROGRAMS))
@pytest.mark.parametrize("mesh_name", ["data", "fsdp", "2x2x2"])
def test_no_device_holds_the_global_batch_and_each_does_its_share_of_the_flops(kind,
                                                                               mesh_name):
  mesh_shape = MESHES[mesh_name]
  compiled = PROGRAMS[kind](mesh_shape)
  text = compiled.as_text()
  assert hlo.activations_with_batch(text, BATCH, LENGTH) == []
  shards = mesh_shape[0] * mesh_shape[1]
  assert hlo.max_activation_batch(text, LENGTH) == BATCH // shards
  # XLA's FLOP count of one device against the one-device program's, split 8 ways. The
  # optimiser, replicated under data, is a few percent of this model's FLOPs; under
  # tensor=2 the embeddings, LayerNorms and softmax run on both tensor shards (measured
  # +13% for this narrow model), still far below the batch share alone (one / 4).
  one = hlo.flops(PROGRAMS[kind]((1, 1, 1)))
  if mesh_shape[2] == 1:
    assert hlo.flops(compiled) == pytest.approx(one / 8, rel=0.1)
  else:
    assert one / 8 * 0.95 <= hlo.flops(compiled) <= one / 8 * 1.25


@pytest.mark.parametrize("kind", sorted(PROGRAMS))
def test_tensor_splits_heads_and_mlp_and_all_reduces_the_hidden_state(kind):
  text = PROGRAMS[kind](MESHES["tensor"]).as_text()
  shapes = {shape for _, shape in hlo.array_shapes(text, 3)}
  # Every device holds the whole batch (tensor does not split it), 1 of 8 heads and
  # 8 of 64 MLP columns, and never the full MLP width.
  assert (BATCH, LENGTH, 1, 4) in shapes
  assert (BATCH, LENGTH, 8) in shapes
  assert not any(s[:2] == (BATCH, LENGTH) and s[2:] == (BERT.intermediate_size,)
                 for s in shapes)
  found = hlo.collectives(text)
  assert found["all-reduce"]["count"] >= 2 * BERT.num_hidden_layers  # Megatron: 2 per layer


def test_fsdp_gathers_weights_and_moves_no_more_than_data_parallelism():
  """Under fsdp the weights are all-gathered where used; the gradients are reduced once.

  (The CPU compiler has no reduce-scatter: it writes one as an all-reduce and a slice,
  so the check here is that fsdp all-reduces no more than data parallelism does, where
  the whole-batch bug all-reduced activations in every layer.)
  """
  fsdp = hlo.collectives(pretrain_program(MESHES["fsdp"]).as_text())
  data = hlo.collectives(pretrain_program(MESHES["data"]).as_text())
  assert fsdp["all-gather"]["count"] > 0 and data["all-gather"]["count"] == 0
  assert fsdp["all-reduce"]["bytes"] <= 1.05 * data["all-reduce"]["bytes"]
  assert fsdp["all-to-all"]["bytes"] <= 0.05 * data["all-reduce"]["bytes"]


@pytest.mark.parametrize("scan_layers,remat", [(True, False), (True, True), (False, True)])
def test_scan_and_remat_variants_split_the_batch_under_fsdp(scan_layers, remat):
  text = pretrain_program(MESHES["fsdp"], scan_layers, remat).as_text()
  assert hlo.activations_with_batch(text, BATCH, LENGTH) == []
  assert hlo.max_activation_batch(text, LENGTH) == BATCH // 8
