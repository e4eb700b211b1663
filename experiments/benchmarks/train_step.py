r"""Pre-training step throughput and MFU: ours vs transformers' FlaxBertForPreTraining.

  python -m experiments.benchmarks.train_step --sizes=tiny,small --seq_lens=128 \
      --batch_size=32 --steps=5 --rounds=3
"""
from __future__ import annotations

import json
import time
from typing import Any
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from absl import app, flags

from biobert_jax import models
from biobert_jax.runtime import host_memory
from biobert_jax.config import BertConfig
from biobert_jax.configs.optim import bert_spec
from biobert_jax.train import optim
from biobert_jax.train import step as step_lib
from biobert_jax.trainers.pretrain_data import SyntheticBatches
from experiments.benchmarks import common

_SIZES = flags.DEFINE_list("sizes", ["tiny", "small"], "BertConfig presets.")
_SEQ_LENS = flags.DEFINE_list("seq_lens", ["128"], "Sequence lengths.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds (ours, peer, ours, ...).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_PEER = flags.DEFINE_bool("peer", True, "Also time transformers' FlaxBertForPreTraining.")
_OUTPUT = flags.DEFINE_string("output", "", "Append JSON rows here.")

def _ours(c: BertConfig, dtype, tx, schedule) -> tuple[Callable, Any]:
  model = models.BertForPreTraining(c, dtype=dtype)
  params = models.init_params(model, jax.random.PRNGKey(0))
  state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0),
           "rng": jax.random.PRNGKey(1)}
  step = jax.jit(step_lib.make_train_step(model, tx, schedule), donate_argnums=0)
  return step, state


def _peer(c: BertConfig, dtype, tx) -> tuple[Callable, Any] | None:
  # The peer is optional (heavy): without torch/transformers only ours is timed.
  try:
    import transformers
  except ImportError:
    return None
  hf_config = transformers.BertConfig(**{k: v for k, v in c.to_dict().items()
                                         if k != "layer_norm_eps"},
                                      layer_norm_eps=c.layer_norm_eps)
  model = transformers.FlaxBertForPreTraining(hf_config, seed=0, dtype=dtype)

  def loss_fn(params, batch, rng):
    out = model(batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                params=params, dropout_rng=rng, train=True)
    logits = jnp.take_along_axis(out.prediction_logits,
                                 batch["masked_lm_positions"][..., None], axis=1)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    nll = -jnp.take_along_axis(logp, batch["masked_lm_ids"][..., None], -1)[..., 0]
    w = batch["masked_lm_weights"]
    nsp = jax.nn.log_softmax(out.seq_relationship_logits.astype(jnp.float32))
    nsp_nll = -jnp.take_along_axis(nsp, batch["next_sentence_labels"][:, None], -1)
    return jnp.sum(nll * w) / (jnp.sum(w) + 1e-5) + jnp.mean(nsp_nll)

  def step(state, batch):
    rng = jax.random.fold_in(state["rng"], state["step"])
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch, rng)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state,
            "step": state["step"] + 1, "rng": state["rng"]}, {"loss": loss}

  params = model.params
  state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0),
           "rng": jax.random.PRNGKey(1)}
  return jax.jit(step, donate_argnums=0), state


def _time(step: Callable, state: Any, batch: Any, n: int) -> tuple[float, Any]:
  t = time.perf_counter()
  for _ in range(n):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  return (time.perf_counter() - t) / n, state


def bench(size: str, seq: int) -> list[dict[str, Any]]:
  dtype = jnp.bfloat16 if _DTYPE.value == "bfloat16" else jnp.float32
  c = BertConfig.preset(size, max_position_embeddings=max(512, seq))
  preds = max(1, round(seq * 0.15))
  tx, schedule = optim.make_optimizer(
      bert_spec(learning_rate=1e-4, warmup_steps=10, total_steps=1000))
  batch = SyntheticBatches(batch_size=_BATCH.value, seq_len=seq, num_predictions=preds,
                           vocab_size=c.vocab_size, seed=0).batch(0)
  batch = jax.device_put(batch)
  runners = {"biobert_jax": _ours(c, dtype, tx, schedule)}
  if _PEER.value:
    peer = _peer(c, dtype, tx)
    if peer is not None:
      runners["transformers_flax"] = peer
  states = {}
  for name, (step, state) in runners.items():  # compile + warm up
    _, states[name] = _time(step, state, batch, 2)

  def runner(name):
    def run(n):
      t, states[name] = _time(runners[name][0], states[name], batch, n)
      return t
    return run

  times = common.interleaved({name: runner(name) for name in runners}, _ROUNDS.value,
                             _STEPS.value)
  flops = common.pretraining_flops_per_step(c, _BATCH.value, seq, preds)
  device = jax.devices()[0]
  peak, _ = common.peak_flops(device)
  rows = []
  for name, ts in times.items():
    t = common.median(ts)
    rows.append({"impl": name, "size": size, "seq_len": seq, "batch_size": _BATCH.value,
                 "dtype": _DTYPE.value, "device": device.device_kind,
                 "step_ms": 1e3 * t, "tokens_per_sec": _BATCH.value * seq / t,
                 "model_tflops_per_sec": flops / t / 1e12,
                 "peak_tflops_per_sec": peak / 1e12 if peak else None,
                 "mfu": flops / t / peak if peak else None, "load": common.machine_load()})
  if len(rows) == 2:
    rows[0]["speedup_vs_peer"] = rows[0]["tokens_per_sec"] / rows[1]["tokens_per_sec"]
  return rows


def main(argv):
  del argv
  host_memory.keep_host_buffers()  # as the mains run ours (and torch, in this process)
  print(common.machine_load(), flush=True)
  for size in _SIZES.value:
    for seq in map(int, _SEQ_LENS.value):
      for row in bench(size, seq):
        mfu = common.fmt_mfu(row["mfu"])
        extra = f"  x{row['speedup_vs_peer']:.2f} vs peer" if "speedup_vs_peer" in row else ""
        print(f"{row['impl']:18s} {size:6s} L={seq:<4d} B={row['batch_size']:<4d} "
              f"{row['dtype']:8s} {row['step_ms']:9.1f} ms/step {row['tokens_per_sec']:10.0f} "
              f"tok/s {row['model_tflops_per_sec']:8.3f} TFLOP/s MFU {mfu}{extra}",
              flush=True)
        if _OUTPUT.value:
          with open(_OUTPUT.value, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  app.run(main)
