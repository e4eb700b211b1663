r"""The fine-tuning train step as one program vs gradient + update: compile and step time.

  python -m experiments.benchmarks.split_step --seq_lens=64,128 --rounds=5
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app

from biobert_jax import checkpoints
from biobert_jax.runtime import ahead, host_memory
from experiments.benchmarks import common
from experiments.benchmarks import finetune_step as ft

# --seq_lens (one shape each), --batch_size, --rounds, --checkpoint: finetune_step's flags.
_SEQ_LENS, _BATCH, _ROUNDS, _CHECKPOINT = ft._SEQ_LENS, ft._BATCH, ft._ROUNDS, ft._CHECKPOINT


def main(argv):
  del argv
  host_memory.keep_host_buffers()  # as the mains run
  config, _ = checkpoints.load(_CHECKPOINT.value or ft.default_checkpoint())
  lengths = [int(n) for n in _SEQ_LENS.value]
  batches = {n: common.finetune_batch(config, _BATCH.value, n, 3) for n in lengths}
  steps, states = {}, {}
  for name, split in (("one_program", False), ("split", True)):
    steps[name], states[name] = common.finetune_step(config, None, 3, jnp.float32,
                                                     split=split)
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
