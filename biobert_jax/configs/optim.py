"""The optimiser block `config.optim` that both trainers share: its one builder, BERT's
values and its rules. biobert_jax.train.optim reads it with every key required.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Sequence

from biobert_jax.configs import checks

OPTIMIZERS = ("adamw", "lamb")

# BERT's optimization.py (AdamWeightDecayOptimizer): the values every preset starts from.
BERT_OPTIM = dict(optimizer="adamw", weight_decay=0.01, b1=0.9, b2=0.999, eps=1e-6,
                  clip_norm=1.0)
WARMUP_KEYS = ("warmup_steps", "warmup_proportion")
KEYS = ("optimizer", "learning_rate", "weight_decay", "b1", "b2", "eps", "clip_norm")


def optim_config(learning_rate: float, *, warmup_steps: int | None = None,
                 warmup_proportion: float | None = None, **changes: Any) -> Any:
  """`config.optim` with BERT's values and exactly one warmup key: `warmup_steps`
  (pre-training) or `warmup_proportion` of the run's steps (fine-tuning, run_classifier)."""
  import ml_collections  # here only: benchmarks on the accelerator image lack it
  if (warmup_steps is None) == (warmup_proportion is None):
    raise ValueError("optim_config takes exactly one of warmup_steps, warmup_proportion")
  unknown = sorted(set(changes) - set(BERT_OPTIM))
  if unknown:
    raise ValueError(f"optim_config: unknown keys {unknown}; valid: {sorted(BERT_OPTIM)}")
  block = dict(BERT_OPTIM, **changes)
  c = ml_collections.ConfigDict()
  c.optimizer = block["optimizer"]  # adamw | lamb
  c.learning_rate = learning_rate  # peak rate: linear warmup to it, then linear decay to 0
  if warmup_steps is not None:
    c.warmup_steps = warmup_steps
  else:
    c.warmup_proportion = warmup_proportion  # floor(proportion * total steps)
  c.weight_decay = block["weight_decay"]  # not on LayerNorm params nor biases
  c.b1 = block["b1"]
  c.b2 = block["b2"]
  c.eps = block["eps"]
  c.clip_norm = block["clip_norm"]  # global-norm clipping; 0 = off
  return c


def bert_spec(*, learning_rate: float, warmup_steps: int, total_steps: int,
              trainable: Sequence[str] = (), **changes: Any) -> dict[str, Any]:
  """A complete `make_optimizer` spec with BERT's values, for code that has no trainer
  config (tests, benchmarks)."""
  return dict(BERT_OPTIM, **changes, learning_rate=learning_rate, warmup_steps=warmup_steps,
              total_steps=total_steps, trainable=tuple(trainable))


def validate(config: Any, key: str = "optim") -> None:
  """Checks the block at `config.<key>`: every key present, each value in its range.

  Raises:
    checks.ConfigError: naming the first missing or bad key (`config.optim.<key>`).
  """
  present, block = checks.lookup(config, key)
  if not present:
    raise checks.ConfigError(f"config.{key} is missing: the optimiser block "
                             "(biobert_jax.configs.optim.optim_config)")
  for name in KEYS:
    if name not in block:
      raise checks.ConfigError(f"config.{key}.{name} is missing (every optimiser key is "
                               "required: biobert_jax.configs.optim.optim_config)")
  warmups = [w for w in WARMUP_KEYS if w in block]
  if len(warmups) != 1:
    raise checks.ConfigError(f"config.{key} needs exactly one of "
                             f"{', '.join(f'{key}.{w}' for w in WARMUP_KEYS)}")
  checks.choice(config, f"{key}.optimizer", OPTIMIZERS)
  # 0 is allowed: a run that must not move the weights (tests continue an export so).
  checks.check_range(config, f"{key}.learning_rate", low=0)
  checks.check_range(config, f"{key}.weight_decay", low=0)
  checks.check_range(config, f"{key}.b1", low=0, high=1, high_open=True)
  checks.check_range(config, f"{key}.b2", low=0, high=1, high_open=True)
  checks.check_range(config, f"{key}.eps", low=0, low_open=True)
  checks.check_range(config, f"{key}.clip_norm", low=0, note=" (0 = no clipping)")
  checks.non_negative_int(config, f"{key}.warmup_steps")
  checks.check_range(config, f"{key}.warmup_proportion", low=0, high=1)


def validate_trainable(config: Any) -> None:
  """`config.trainable` (top level in both presets) is a tuple of regexes."""
  present, trainable = checks.lookup(config, "trainable")
  if present and isinstance(trainable, str):
    checks.fail("trainable", trainable, "must be a tuple of regexes, e.g. ('encoder/layer_11',)")
