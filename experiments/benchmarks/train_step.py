r"""Train-step throughput and MFU: ours vs transformers' FlaxBertForPreTraining.

  python -m experiments.benchmarks.train_step --sizes=tiny,small --seq_lens=128 \
      --batch_size=32 --steps=10
  python -m experiments.benchmarks.train_step --sizes=base --seq_lens=512 \
      --batch_size=32 --dtype=bfloat16 --steps=20          # on a GPU/TPU

Both models get the same BertConfig, batch, AdamW (biobert_jax.train.optim, clipping and
decay mask included), dropout on, and one jitted step each; they run alternately
(--rounds) so machine noise hits both. Reported:
  tokens/s     ALL tokens of the batch (B * L, padding included) per second.
  model TFLOP/s  analytic model FLOPs (6 * matmul params per token + attention, MLM
               projection on the P masked positions as in original BERT) / step time.
               The same FLOP count is used for both implementations, so the extra work
               transformers does (projecting every position onto the vocabulary) shows as
               lower MFU, not as more FLOPs.
  MFU          model FLOP/s / peak. CPU: peak = a measured large float32 matmul.
               GPU/TPU: the chip's dense bf16 peak from PEAK_FLOPS by device_kind.
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from biobert_jax import models
from biobert_jax.config import BertConfig
from biobert_jax.train import optim
from biobert_jax.train import step as step_lib
from experiments.pretrain_data import SyntheticBatches

_SIZES = flags.DEFINE_list("sizes", ["tiny", "small"], "BertConfig presets.")
_SEQ_LENS = flags.DEFINE_list("seq_lens", ["128"], "Sequence lengths.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds (ours, peer, ours, ...).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_PEER = flags.DEFINE_bool("peer", True, "Also time transformers' FlaxBertForPreTraining.")
_OUTPUT = flags.DEFINE_string("output", "", "Append JSON rows here.")

# Dense bf16 peak FLOP/s per chip (vendor figures, no sparsity).
PEAK_FLOPS = {
    "H100": 989e12, "H200": 989e12, "H800": 989e12, "GH200": 989e12, "B200": 2250e12,
    "A100": 312e12, "A800": 312e12, "L4": 121e12, "V100": 125e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
    "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12,
}


def chip_peak(device: jax.Device) -> float | None:
  kind = device.device_kind
  if "H100" in kind and "PCIe" in kind:
    return 756e12
  for name, peak in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])):
    if name.lower() in kind.lower():
      return peak
  return None


def measured_matmul_peak(n: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of a large float32 matmul on the default device (the CPU 'peak')."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n ** 3 / min(times)


def model_flops_per_step(c: BertConfig, batch: int, seq: int, preds: int) -> float:
  """Training FLOPs (3x forward) of one step, counting matmuls only."""
  h, i, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
  per_token = layers * (2 * 4 * h * h + 2 * 2 * h * i + 2 * 2 * seq * h)  # dense + attention
  forward = batch * seq * per_token
  forward += batch * preds * (2 * h * h + 2 * h * c.vocab_size)  # MLM transform + projection
  forward += batch * (2 * h * h + 2 * h * 2)  # pooler + NSP
  return 3.0 * forward


def _ours(c: BertConfig, dtype, tx, schedule) -> tuple[Callable, Any]:
  model = models.BertForPreTraining(c, dtype=dtype)
  params = models.init_params(model, jax.random.PRNGKey(0))
  state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0),
           "rng": jax.random.PRNGKey(1)}
  step = jax.jit(step_lib.make_train_step(model, tx, schedule), donate_argnums=0)
  return step, state


def _peer(c: BertConfig, dtype, tx) -> tuple[Callable, Any] | None:
  try:
    import transformers  # pylint: disable=import-outside-toplevel
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
  tx, schedule = optim.make_optimizer({"learning_rate": 1e-4, "warmup_steps": 10,
                                       "total_steps": 1000})
  batch = SyntheticBatches(batch_size=_BATCH.value, seq_len=seq, num_predictions=preds,
                           vocab_size=c.vocab_size, seed=0).batch(0)
  batch = jax.device_put(batch)
  runners = {"biobert_jax": _ours(c, dtype, tx, schedule)}
  if _PEER.value:
    peer = _peer(c, dtype, tx)
    if peer is not None:
      runners["transformers_flax"] = peer
  states, times = {}, {name: [] for name in runners}
  for name, (step, state) in runners.items():  # compile + warm up
    _, states[name] = _time(step, state, batch, 2)
  for _ in range(_ROUNDS.value):
    for name, (step, _) in runners.items():
      t, states[name] = _time(step, states[name], batch, _STEPS.value)
      times[name].append(t)
  flops = model_flops_per_step(c, _BATCH.value, seq, preds)
  device = jax.devices()[0]
  peak = chip_peak(device) if device.platform != "cpu" else measured_matmul_peak()
  rows = []
  for name, ts in times.items():
    t = statistics.median(ts)
    rows.append({"impl": name, "size": size, "seq_len": seq, "batch_size": _BATCH.value,
                 "dtype": _DTYPE.value, "device": device.device_kind,
                 "step_ms": 1e3 * t, "tokens_per_sec": _BATCH.value * seq / t,
                 "model_tflops_per_sec": flops / t / 1e12,
                 "peak_tflops_per_sec": peak / 1e12 if peak else None,
                 "mfu": flops / t / peak if peak else None})
  if len(rows) == 2:
    rows[0]["speedup_vs_peer"] = rows[0]["tokens_per_sec"] / rows[1]["tokens_per_sec"]
  return rows


def main(argv):
  del argv
  for size in _SIZES.value:
    for seq in map(int, _SEQ_LENS.value):
      for row in bench(size, seq):
        mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "n/a"
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
