"""XLA compiler options by kind of program: forward-only programs on CPU use Eigen dots
(docs/cpu.md); `BIOBERT_JAX_INFERENCE_DOTS=xla` keeps XLA's defaults.
"""
from __future__ import annotations

import os
from typing import Any
from collections.abc import Sequence

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
