r"""The fine-tuning train step as one program vs two (gradient per shape + update once).

  python -m experiments.benchmarks.split_step --seq_lens=64,128 --rounds=5

Both variants are built from the trainer's pieces (train.step's make_loss_train_step /
make_loss_grad_step + make_update_step, train.ahead's CompiledByShape / SplitTrainStep) on
the MiniLM-L6 token classifier (or --checkpoint), batch --batch_size, dropout on, the
benchmarks' AdamW. Printed: the wall time to compile every --seq_lens shape ahead with one
compile thread (what a cold fine-tune pays on a 2-core box), the step time per length
(the variants take turns, first round not timed), their ratio, and the largest parameter
difference after the same steps (~0: the same arithmetic, cut in two, fused a little
differently).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app

from biobert_jax import checkpoints, models, sharding
from biobert_jax.runtime import host_memory
from biobert_jax.train import optim
from biobert_jax.runtime import ahead
from biobert_jax.train import state as state_lib
from biobert_jax.train import step as step_lib
from experiments.benchmarks import common
from experiments.benchmarks import finetune_step as ft

# --seq_lens (one shape each), --batch_size, --rounds, --checkpoint: finetune_step's flags.
_SEQ_LENS, _BATCH, _ROUNDS, _CHECKPOINT = ft._SEQ_LENS, ft._BATCH, ft._ROUNDS, ft._CHECKPOINT  # pylint: disable=protected-access


def _variants(module, tx, schedule, shardings, mesh):
  def loss_fn(params, batch, rng):
    logits = module.apply({"params": params}, batch["input_ids"], batch["token_type_ids"],
                          batch["attention_mask"], deterministic=False,
                          rngs={"dropout": rng})
    labels = batch["labels"]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)), {}

  one = ahead.CompiledByShape(step_lib.jit_train_step(
      step_lib.make_loss_train_step(loss_fn, tx, schedule), shardings, mesh))
  split = ahead.SplitTrainStep(
      step_lib.jit_grad_step(step_lib.make_loss_grad_step(loss_fn), shardings, mesh),
      step_lib.jit_update_step(step_lib.make_update_step(tx, schedule), shardings, mesh))
  return {"one_program": one, "split": split}


def main(argv):
  del argv
  host_memory.keep_host_buffers()  # as the mains run
  config, _ = checkpoints.load(_CHECKPOINT.value or ft.default_checkpoint())
  module = models.BertForTokenClassification(config, num_labels=3)
  params = models.init_params(module, jax.random.key(0))
  tx, schedule = optim.make_optimizer(common.FINETUNE_OPT)
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  specs = models.logical_axes(module, seq_len=16)
  lengths = [int(n) for n in _SEQ_LENS.value]
  batches = {n: common.finetune_batch(config, _BATCH.value, n, 3) for n in lengths}
  states, shardings = {}, None
  for name in ("one_program", "split"):
    states[name], shardings = state_lib.state_from_params(params, specs, tx, mesh, seed=1)
  steps = _variants(module, tx, schedule, shardings, mesh)
  for name, step in steps.items():
    start = time.perf_counter()
    step.compile_ahead((ahead.abstract(states[name]),),
                       [ahead.abstract(batches[n]) for n in lengths], threads=1)
    step.wait()
    print(f"{name:12s} compile {len(lengths)} shapes: {time.perf_counter() - start:6.1f} s",
          flush=True)
  times = {(name, n): [] for name in steps for n in lengths}
  for round_ in range(_ROUNDS.value):
    for n in lengths:
      for name, step in steps.items():
        start = time.perf_counter()
        states[name], metrics = step(states[name], batches[n])
        jax.block_until_ready(metrics)
        if round_:
          times[(name, n)].append(time.perf_counter() - start)
  for n in lengths:
    one, split = (np.median(times[(name, n)]) for name in steps)
    print(f"L={n:4d} step one_program {one * 1e3:8.1f} ms  split {split * 1e3:8.1f} ms  "
          f"split/one {split / one:.3f}")
  diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(states["one_program"]["params"]), jax.tree.leaves(states["split"]["params"])))
  print(f"largest parameter difference after the same steps: {diff:.3g}")


if __name__ == "__main__":
  app.run(main)
