"""BERT models in Flax linen, and helpers to initialise them and read their logical axes."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from biobert_jax.models.encoder import BertEncoder, BertLayer
from biobert_jax.models.heads import BertMLMHead, BertPreTrainingHeads
from biobert_jax.models.pretraining import BertForPreTraining
from biobert_jax.models.task_models import (BertForMultiTokenClassification,
                                            BertForQuestionAnswering,
                                            BertForSequenceClassification,
                                            BertForTokenClassification)

__all__ = [
    "BertEncoder", "BertLayer", "BertForPreTraining", "BertForTokenClassification",
    "BertForSequenceClassification", "BertForQuestionAnswering",
    "BertForMultiTokenClassification", "BertMLMHead",
    "BertPreTrainingHeads", "init_params", "logical_axes", "dummy_inputs", "DTYPES",
    "compute_dtype",
]

# Compute dtypes by config name (params always stay float32).
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str) -> Any:
  """The jnp dtype for a config's `dtype` string; names the allowed values otherwise."""
  if name not in DTYPES:
    raise ValueError(f"dtype={name!r} is not one of {sorted(DTYPES)}")
  return DTYPES[name]


def dummy_inputs(module: nn.Module, *, batch_size: int = 1, seq_len: int = 16,
                 **extra_inputs: Any) -> dict[str, Any]:
  """Keyword inputs that make `module.init` trace every parameter (zeros; ids are valid)."""
  ids = jnp.zeros((batch_size, seq_len), jnp.int32)
  inputs: dict[str, Any] = dict(input_ids=ids, token_type_ids=ids,
                                attention_mask=jnp.ones_like(ids))
  if isinstance(module, BertForPreTraining):
    inputs["masked_lm_positions"] = jnp.zeros((batch_size, min(seq_len, 4)), jnp.int32)
  if isinstance(module, BertForSequenceClassification) and module.pooling == "entity_start":
    inputs["entity_positions"] = jnp.zeros((batch_size, 2), jnp.int32)
  inputs.update(extra_inputs)
  return inputs


def _init(module: nn.Module, rng: jax.Array, inputs: dict[str, Any]) -> Any:
  return module.init({"params": rng}, **inputs, deterministic=True)["params"]


# Modules are hashable dataclasses: equal modules with equal input shapes compile once.
_jit_init = jax.jit(_init, static_argnums=0)


def init_params(module: nn.Module, rng: jax.Array, *, batch_size: int = 1, seq_len: int = 16,
                **extra_inputs: Any) -> Any:
  """Freshly initialised params of `module` as a plain pytree (logical-axis boxes removed)."""
  inputs = dummy_inputs(module, batch_size=batch_size, seq_len=seq_len, **extra_inputs)
  return nn.unbox(_jit_init(module, rng, inputs))


def param_shapes(module: nn.Module, **extra_inputs: Any) -> Any:
  """The params tree of `module` as jax.ShapeDtypeStruct leaves (nothing is allocated)."""
  inputs = dummy_inputs(module, **extra_inputs)
  return nn.unbox(jax.eval_shape(lambda: _init(module, jax.random.key(0), inputs)))


def logical_axes(module: nn.Module, *, seq_len: int = 16, **extra_inputs: Any) -> Any:
  """A pytree (same structure as the params) of PartitionSpecs of logical axis names."""
  inputs = dummy_inputs(module, seq_len=seq_len, **extra_inputs)
  boxed = jax.eval_shape(lambda: _init(module, jax.random.key(0), inputs))
  return nn.get_partition_spec(boxed)
