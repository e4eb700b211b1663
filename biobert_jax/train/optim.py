"""Optimisers as BERT trains: AdamW / LAMB, warmup + linear decay, no decay on LayerNorm and
biases, `trainable` patterns; `optimizer_from_config` serves both trainers (config.optim).
"""
from __future__ import annotations

import re
from typing import Any
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from biobert_jax.tree import path_str

# Original BERT (optimization.py): exclude_from_weight_decay=["LayerNorm", "layer_norm",
# "bias"], matched with re.search against the variable name. Flax names LayerNorm's gain
# "scale", which sits under a LayerNorm scope, so the same patterns work on our paths.
NO_DECAY_PATTERNS = ("LayerNorm", "layer_norm", "bias")

# make_optimizer's fields: every one required (a config's missing key must not become a
# default nobody chose). Built from config.optim (biobert_jax/configs/optim.py).
SPEC_KEYS = ("optimizer", "learning_rate", "warmup_steps", "total_steps", "weight_decay",
             "b1", "b2", "eps", "clip_norm", "trainable")
_BLOCK_KEYS = ("optimizer", "learning_rate", "weight_decay", "b1", "b2", "eps", "clip_norm")


def _source(key: str) -> str:
  """Where a spec field comes from, as the user spells it."""
  return {"total_steps": "the run's total steps", "trainable": "config.trainable",
          "warmup_steps": "config.optim.warmup_steps or config.optim.warmup_proportion",
          }.get(key, f"config.optim.{key}")


def _require(cfg: Any, key: str) -> Any:
  """cfg[key] (a Mapping or ConfigDict); a missing key is one line naming its source."""
  if key not in cfg:
    raise ValueError(f"the optimiser needs {_source(key)} ({key!r} is missing; no defaults "
                     "are filled in)")
  return cfg[key]


def weight_decay_mask(params: Any) -> Any:
  """True where weight decay applies (every param except LayerNorm params and biases)."""
  return jax.tree_util.tree_map_with_path(
      lambda p, _: not any(re.search(pat, path_str(p)) for pat in NO_DECAY_PATTERNS),
      params)


def trainable_labels(params: Any, trainable: Sequence[str]) -> Any:
  """'train' / 'frozen' per leaf: trainable iff some regex re.search-es its path."""
  patterns = [re.compile(t) for t in trainable]
  labels = jax.tree_util.tree_map_with_path(
      lambda p, _: "train" if any(r.search(path_str(p)) for r in patterns) else "frozen",
      params)
  if "train" not in jax.tree.leaves(labels):
    raise ValueError(f"trainable={tuple(trainable)} matches no parameter path")
  return labels


def stop_frozen_gradients(params: Any, trainable: Sequence[str]) -> Any:
  """`params` with `jax.lax.stop_gradient` on every leaf `trainable` does not select.

  The optimiser already gives frozen leaves a zero update (make_optimizer); cutting their
  gradient in the loss as well lets XLA drop the backward work nothing trains, e.g. the
  whole encoder's backward pass when only heads train (the main job's head stage). The
  trainable leaves' gradients are unchanged. Empty `trainable` = everything trains.
  """
  if not trainable:
    return params
  return jax.tree.map(lambda x, label: x if label == "train" else jax.lax.stop_gradient(x),
                      params, trainable_labels(params, trainable))


def bert_schedule(learning_rate: float, warmup_steps: int,
                  total_steps: int) -> Callable[[jax.Array], jax.Array]:
  """Original BERT schedule: lr * (1 - step / total), overridden by lr * step / warmup.

  The argument is the number of updates applied so far (optax's count), like BERT's
  global_step when the update is computed.
  """
  lr = float(learning_rate)
  warmup = int(warmup_steps)
  total = max(int(total_steps), 1)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    decayed = lr * (1.0 - jnp.minimum(step, total) / total)
    if warmup <= 0:
      return decayed
    return jnp.where(step < warmup, lr * step / warmup, decayed)

  return schedule


def make_optimizer(cfg: Any) -> tuple[optax.GradientTransformation, Callable]:
  """(tx, schedule) for a spec holding every SPEC_KEYS field (`optimizer_spec` builds one).

  Raises:
    ValueError: for a missing field (naming `config.optim.<key>`) or an unknown optimizer.
  """
  spec = {key: _require(cfg, key) for key in SPEC_KEYS}
  schedule = bert_schedule(spec["learning_rate"], spec["warmup_steps"], spec["total_steps"])
  name = str(spec["optimizer"]).lower()
  kw = dict(b1=float(spec["b1"]), b2=float(spec["b2"]), eps=float(spec["eps"]),
            weight_decay=float(spec["weight_decay"]), mask=weight_decay_mask)
  if name == "adamw":
    opt = optax.adamw(schedule, **kw)
  elif name == "lamb":
    opt = optax.lamb(schedule, **kw)
  else:
    raise ValueError(f"cfg.optimizer={name!r}: expected 'adamw' or 'lamb'")
  clip = float(spec["clip_norm"])
  tx = optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt
  trainable = tuple(spec["trainable"] or ())
  if trainable:
    # Frozen leaves get set_to_zero: no moments are allocated for them and their update is
    # exactly 0, so they stay bit-identical. Clipping then only sees trainable grads.
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                               lambda params: trainable_labels(params, trainable))
  return tx, schedule


def trainable_from_config(config: Any, extra_trainable: Sequence[str] = ()) -> tuple[str, ...]:
  """The trainable patterns of a trainer config plus `extra_trainable`; () = all train.

  The optimiser (zero updates) and the train step (no gradients) both take these."""
  return tuple(config.trainable or ()) + tuple(extra_trainable)


def optimizer_spec(config: Any, total_steps: int, *,
                   extra_trainable: Sequence[str] = ()) -> dict[str, Any]:
  """The make_optimizer fields of a trainer config: the one place both trainers read
  `config.optim` (every key required: biobert_jax/configs/optim.py).

  Warmup is `config.optim.warmup_steps` when the block has that key (pre-training), else
  `int(config.optim.warmup_proportion * total_steps)` (fine-tuning, BERT's
  run_classifier). `extra_trainable` patterns are added to `config.trainable` (e.g.
  fine-tuning's trainable_top_k). The values are plain and hashable, so the spec also
  identifies the optimiser (the fine-tuning trainer keys its reusable jitted steps on it).

  Raises:
    ValueError: for a missing key, a negative warmup or a warmup proportion outside [0, 1].
  """
  if "optim" not in config:
    raise ValueError("the optimiser needs config.optim (biobert_jax/configs/optim.py); "
                     "it is missing")
  block = config.optim
  values = {key: _require(block, key) for key in _BLOCK_KEYS}
  if "warmup_steps" in block or "warmup_proportion" not in block:
    warmup = int(_require(block, "warmup_steps"))  # neither key: names both
    key = "warmup_steps"
  else:
    proportion = float(block.warmup_proportion)
    if not 0.0 <= proportion <= 1.0:
      raise ValueError(f"config.optim.warmup_proportion={proportion} must be in [0, 1]")
    warmup = int(proportion * int(total_steps))  # floor, as BERT's run_classifier
    key = "warmup_proportion"
  if warmup < 0:
    raise ValueError(f"config.optim.{key} gives a negative warmup ({warmup} steps)")
  return dict(
      optimizer=str(values["optimizer"]), learning_rate=float(values["learning_rate"]),
      warmup_steps=warmup, total_steps=int(total_steps),
      weight_decay=float(values["weight_decay"]), b1=float(values["b1"]),
      b2=float(values["b2"]), eps=float(values["eps"]), clip_norm=float(values["clip_norm"]),
      trainable=trainable_from_config(config, extra_trainable))


def optimizer_from_config(config: Any, total_steps: int, *,
                          extra_trainable: Sequence[str] = ()
                          ) -> tuple[optax.GradientTransformation, Callable]:
  """(tx, schedule) of `optimizer_spec(config, total_steps, extra_trainable=...)`."""
  return make_optimizer(optimizer_spec(config, total_steps, extra_trainable=extra_trainable))
