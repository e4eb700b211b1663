"""Train steps (pre-training with in-step accumulation; fine-tuning as gradient + update,
`make_finetune_step` the trainer's), the eval step, and their jit helpers.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from biobert_jax import sharding as sharding_lib
from biobert_jax.runtime import ahead, xla_options
from biobert_jax.train import losses, optim

Batch = dict[str, jax.Array]


def _forward_sums(model: Any, params: Any, batch: Batch, rng: jax.Array | None,
                  deterministic: bool) -> dict[str, jax.Array]:
  mlm_logits, nsp_logits = model.apply(
      {"params": params},
      batch["input_ids"],
      batch["segment_ids"],
      batch["input_mask"],
      batch["masked_lm_positions"],
      deterministic=deterministic,
      rngs=None if deterministic else {"dropout": rng})
  sums = losses.mlm_sums(mlm_logits, batch["masked_lm_ids"], batch["masked_lm_weights"])
  sums.update(losses.nsp_sums(nsp_logits, batch["next_sentence_labels"]))
  return sums


def _split_microbatches(batch: Batch, k: int, mesh: Mesh | None) -> Batch:
  """[B, ...] -> [k, B/k, ...] so that every microbatch is spread over all devices.

  Microbatch i takes rows i, i+k, i+2k, ...: reshaping to [B/k, k] keeps the batch-dim
  sharding on B/k, and the swap moves k to the front for lax.scan.
  """
  def split(x):
    b = x.shape[0]
    if b % k:
      raise ValueError(f"batch size {b} is not divisible by grad_accum_steps={k}")
    x = x.reshape((b // k, k) + x.shape[1:]).swapaxes(0, 1)
    if mesh is not None:
      x = jax.lax.with_sharding_constraint(
          x, NamedSharding(mesh, P(None, sharding_lib.BATCH_AXES)))
    return x
  return jax.tree.map(split, batch)


def make_train_step(model: Any, tx: optax.GradientTransformation,
                    schedule: Callable[[jax.Array], jax.Array], *,
                    grad_accum_steps: int = 1, mesh: Mesh | None = None,
                    deterministic: bool = False,
                    trainable: Sequence[str] = (),
                    nsp_weight: float = 1.0) -> Callable[[dict, Batch], tuple]:
  """Returns train_step(state, batch) -> (new_state, metrics) (not yet jitted).

  With grad_accum_steps=k the batch is cut into k microbatches inside the step and
  lax.scan sums their gradients; each microbatch's loss is divided by the FULL batch's
  denominators (sum of masked_lm_weights + eps, batch size), so the sum is exactly the
  big-batch gradient (not an average of per-microbatch normalised gradients).

  `trainable`: the optimiser's patterns (config.trainable); other leaves get no gradient
  (optim.stop_frozen_gradients), so grad_norm is the trainable leaves' norm.

  `nsp_weight`: the NSP term's weight in the optimised loss (1 = BERT, 0 = MLM only). The
  metrics report both terms unweighted whatever it is.

  Metrics (scalars): loss, mlm_loss, nsp_loss, mlm_accuracy, nsp_accuracy, grad_norm,
  learning_rate (the rate applied at this step), num_tokens (non-pad tokens), is_finite.
  """
  k = int(grad_accum_steps)
  if k < 1:
    raise ValueError(f"grad_accum_steps must be >= 1, got {k}")

  def train_step(state: dict, batch: Batch) -> tuple[dict, dict]:
    params = state["params"]
    step_rng = jax.random.fold_in(state["rng"], state["step"])
    mlm_den = jnp.sum(batch["masked_lm_weights"].astype(jnp.float32)) + losses.MLM_WEIGHT_EPS
    nsp_den = jnp.asarray(batch["next_sentence_labels"].shape[0], jnp.float32)

    def loss_fn(p, mb, rng):
      sums = _forward_sums(model, optim.stop_frozen_gradients(p, trainable), mb, rng,
                           deterministic)
      return losses.loss_from_sums(sums, mlm_den, nsp_den, nsp_weight), sums

    grad_fn = jax.grad(loss_fn, has_aux=True)
    if k == 1:
      grads, sums = grad_fn(params, batch, step_rng)
    else:
      micro = _split_microbatches(batch, k, mesh)

      def body(carry, xs):
        i, mb = xs
        g, s = grad_fn(params, mb, jax.random.fold_in(step_rng, i))
        return jax.tree.map(jnp.add, carry, (g, s)), None

      zero_sums = jax.eval_shape(lambda: _forward_sums(
          model, params, jax.tree.map(lambda x: x[0], micro), step_rng, deterministic))
      init = (jax.tree.map(jnp.zeros_like, params),
              jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero_sums))
      (grads, sums), _ = jax.lax.scan(body, init, (jnp.arange(k), micro))

    metrics = dict(losses.metrics_from_sums(sums),
                   num_tokens=jnp.sum(batch["input_mask"].astype(jnp.float32)))
    return apply_gradients(state, grads, metrics, tx, schedule)

  return train_step


def apply_gradients(state: dict, grads: Any, metrics: dict[str, jax.Array],
                    tx: optax.GradientTransformation,
                    schedule: Callable[[jax.Array], jax.Array]) -> tuple[dict, dict]:
  """The optimiser update and the metrics every trainer's loop relies on.

  Adds grad_norm, learning_rate (the rate applied at this step) and is_finite (loss and
  gradient norm finite: the loop's NaN guard) to `metrics` (which holds "loss").
  """
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  grad_norm = optax.global_norm(grads)
  metrics = dict(metrics, grad_norm=grad_norm, learning_rate=schedule(state["step"]),
                 is_finite=jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm))
  new_state = {"params": optax.apply_updates(state["params"], updates),
               "opt_state": opt_state, "step": state["step"] + 1, "rng": state["rng"]}
  return new_state, metrics


def make_loss_grad_step(loss_fn: Callable[[Any, Batch, jax.Array], tuple[jax.Array, dict]],
                        *, token_mask_key: str = "attention_mask",
                        trainable: Sequence[str] = ()) -> Callable:
  """grad_step(state, batch) -> (grads, metrics) for a mean loss (fine-tuning).

  loss_fn(params, batch, dropout_rng) -> (scalar loss, {name: scalar}); the dropout key is
  fold_in(state["rng"], state["step"]), as in pre-training, so a resumed run and a run on
  another mesh draw the same masks. Only state's params, step and rng are read (jit drops
  the unused optimiser state from the program). metrics: loss_fn's, "loss" (float32) and
  num_tokens (the sum of `batch[token_mask_key]`). `trainable` as in make_train_step.
  """
  def frozen_cut_loss(params, batch, rng):
    return loss_fn(optim.stop_frozen_gradients(params, trainable), batch, rng)

  def grad_step(state: dict, batch: Batch) -> tuple[Any, dict]:
    step_rng = jax.random.fold_in(state["rng"], state["step"])
    (loss, metrics), grads = jax.value_and_grad(frozen_cut_loss, has_aux=True)(
        state["params"], batch, step_rng)
    metrics = dict(metrics, loss=loss.astype(jnp.float32),
                   num_tokens=jnp.sum(batch[token_mask_key].astype(jnp.float32)))
    return grads, metrics

  return grad_step


def make_update_step(tx: optax.GradientTransformation,
                     schedule: Callable[[jax.Array], jax.Array]) -> Callable:
  """update_step(state, grads, {"loss": loss}) -> (new_state, metrics): `apply_gradients`
  as a program of its own. Its shapes are the parameters', whatever the batch, so a
  fine-tune with many batch shapes compiles it once (runtime.ahead.SplitTrainStep)."""
  def update_step(state: dict, grads: Any, scalars: dict) -> tuple[dict, dict]:
    return apply_gradients(state, grads, scalars, tx, schedule)
  return update_step


def make_finetune_step(loss_fn: Callable[[Any, Batch, jax.Array], tuple[jax.Array, dict]],
                       tx: optax.GradientTransformation,
                       schedule: Callable[[jax.Array], jax.Array], state_shardings: Any,
                       mesh: Mesh, *, trainable: Sequence[str] = (),
                       token_mask_key: str = "attention_mask",
                       compiler_options: dict[str, Any] | None = None,
                       split: bool = True) -> ahead.SplitTrainStep | ahead.CompiledByShape:
  """The fine-tuning trainer's train step; the trainer, the tests and the benchmarks all
  build it here, so what they time and check is what fine-tuning runs.

  step(state, batch) -> (new_state, metrics): make_loss_grad_step's gradient, then
  make_update_step's update (metrics: loss_fn's, loss, num_tokens, grad_norm,
  learning_rate, is_finite), with `compile_ahead(...)`, `wait()` and `cancel_pending()`.
  split=True (the trainer's): two programs, the gradient compiled per batch shape and the
  update once (ahead.SplitTrainStep). split=False: both in one program per batch shape,
  the form split is measured and checked against.
  """
  grad_step = make_loss_grad_step(loss_fn, token_mask_key=token_mask_key,
                                  trainable=trainable)
  update_step = make_update_step(tx, schedule)
  if split:
    return ahead.SplitTrainStep(
        jit_grad_step(grad_step, state_shardings, mesh, compiler_options=compiler_options),
        jit_update_step(update_step, state_shardings, mesh,
                        compiler_options=compiler_options))

  def train_step(state: dict, batch: Batch) -> tuple[dict, dict]:
    grads, metrics = grad_step(state, batch)
    new_state, update_metrics = update_step(state, grads, {"loss": metrics["loss"]})
    return new_state, dict(metrics, **update_metrics)

  return ahead.CompiledByShape(jit_train_step(train_step, state_shardings, mesh,
                                              compiler_options=compiler_options))


def make_eval_step(model: Any) -> Callable[[Any, Batch], dict]:
  """eval_step(params, batch) -> summed terms (add them over batches, then
  losses.metrics_from_sums)."""
  def eval_step(params, batch):
    return _forward_sums(model, params, batch, None, True)
  return eval_step


def jit_train_step(train_step: Callable, state_shardings: Any, mesh: Mesh, *,
                   compiler_options: dict[str, Any] | None = None) -> Callable:
  """jit with explicit in/out shardings; the old state is donated (updated in place).

  compiler_options: XLA options, e.g. {"xla_backend_optimization_level": 0}, which
  halves CPU compile time for the tiny models of the tests.
  """
  replicated = NamedSharding(mesh, P())
  return jax.jit(sharding_lib.under_mesh(train_step, mesh),
                 in_shardings=(state_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=(state_shardings, replicated),
                 donate_argnums=(0,), compiler_options=compiler_options)


def jit_grad_step(grad_step: Callable, state_shardings: Any, mesh: Mesh, *,
                  compiler_options: dict[str, Any] | None = None) -> Callable:
  """jit for make_loss_grad_step: the gradients come out laid out as the params."""
  replicated = NamedSharding(mesh, P())
  return jax.jit(sharding_lib.under_mesh(grad_step, mesh),
                 in_shardings=(state_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=(state_shardings["params"], replicated),
                 compiler_options=compiler_options)


def jit_update_step(update_step: Callable, state_shardings: Any, mesh: Mesh, *,
                    compiler_options: dict[str, Any] | None = None) -> Callable:
  """jit for make_update_step; the old state is donated (updated in place). The gradients
  are not: the new state has no room for a fourth parameter-sized tree."""
  replicated = NamedSharding(mesh, P())
  return jax.jit(sharding_lib.under_mesh(update_step, mesh),
                 in_shardings=(state_shardings, state_shardings["params"], replicated),
                 out_shardings=(state_shardings, replicated),
                 donate_argnums=(0,), compiler_options=compiler_options)


def jit_eval_step(eval_step: Callable, params_shardings: Any, mesh: Mesh, *,
                  compiler_options: dict[str, Any] | None = None) -> Callable:
  """jit of a forward-only step(params, batch): outputs replicated, and the options of
  forward programs (xla_options.inference_options: on CPU, dots through Eigen) under
  `compiler_options`."""
  replicated = NamedSharding(mesh, P())
  options = xla_options.merged(compiler_options,
                               xla_options.inference_options(mesh.devices.flat))
  return jax.jit(sharding_lib.under_mesh(eval_step, mesh),
                 in_shardings=(params_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=replicated, compiler_options=options)
