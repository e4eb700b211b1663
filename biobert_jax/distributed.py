"""Starting JAX's multi-process runtime the same way for every command (kept apart so that
annotate imports neither TensorFlow nor ml_collections).
"""
from __future__ import annotations

import os

import jax


def initialize_distributed(coordinator_address: str | None, num_processes: int | None,
                           process_id: int | None, auto: bool = False) -> None:
  """jax.distributed.initialize when a coordinator is given (gloo collectives on CPU)."""
  if auto and not coordinator_address:
    jax.distributed.initialize()
    return
  if not coordinator_address:
    return
  if os.environ.get("JAX_PLATFORMS", "").startswith("cpu") or not _has_accelerator_hint():
    # CPU cross-process collectives need gloo (measured to work; the default has none).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def _has_accelerator_hint() -> bool:
  # Do not query devices before initialize(): that would start the local backend alone.
  return bool(os.environ.get("CUDA_VISIBLE_DEVICES") or os.environ.get("TPU_NAME")
              or os.path.exists("/dev/nvidia0") or os.path.exists("/dev/accel0"))
