"""XLA compiler options by kind of program, in one place, with the measurements behind them.

Forward-only programs on CPU compile their dots with Eigen instead of YNNPACK
(`xla_cpu_experimental_ynn_fusion_type=""`; XLA's default fuses dots with their neighbours
into YNNPACK graphs: the whole FFN block with its LayerNorms and GELU, the attention's
softmax). They are fine-tuning's prediction and `annotate`, plus pre-training's eval step,
which goes through the same `train.step.jit_eval_step` but was not measured.

Measured on the 2-core AVX2 box, MiniLM-L6 token classifier, batch 32, eval mode, against
torch's forward in the same process:

  python -m experiments.benchmarks.xla_flags --kinds=forward --seq_lens=128,384 \
      --variants='default;xla_cpu_experimental_ynn_fusion_type=' --rounds=5 --steps=1

gave Eigen 1.25x / 1.12x faster than the default at 128 / 384 pieces (torch's speed: 0.75x
-> 0.94x at 128, 0.72x -> 0.81x at 384), outputs equal to 1.3e-6; one variant per process
agreed (WORKSPACE_NOTES, issue-12 section, session 16). The training step keeps XLA's
defaults: there Eigen dots are no faster at 64 and 128 pieces (`--kinds=step`), and they
made a BioASQ training epoch slower in session 14.

`BIOBERT_JAX_INFERENCE_DOTS=xla` keeps XLA's defaults for forward programs too (for A/Bs).
Other platforms get no options.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import jax

ENV_VAR = "BIOBERT_JAX_INFERENCE_DOTS"
_EIGEN_DOTS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def inference_options(devices: Sequence[Any] | None = None) -> dict[str, Any]:
  """Compiler options for a forward-only program that runs on `devices` (default: JAX's
  default devices)."""
  if os.environ.get(ENV_VAR, "").lower() == "xla":
    return {}
  platform = (devices[0] if devices else jax.devices()[0]).platform
  return dict(_EIGEN_DOTS) if platform == "cpu" else {}


def merged(base: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any] | None:
  """`extra` with `base`'s options on top: an explicit option (a test's) wins. None when
  both are empty, as jax.jit's default."""
  out = {**extra, **(base or {})}
  return out or None


__all__ = ["inference_options", "merged", "ENV_VAR"]
