"""Topology names -> devices to compile for, with no accelerator present.

`v4:2x2x1`, `v5e:4x4`, `v5p:2x2x2`, ...: libtpu's deviceless topology
(`jax.experimental.topologies.get_topology_desc(..., platform="tpu")`), whose devices
`jax.jit(...).lower(...).compile()` builds real TPU executables for; `2xv5e:16x16`: two
such slices (`num_slices`), their devices told apart by `slice_index`. `cpu:N`: the first N
host devices (the process needs `--xla_force_host_platform_device_count` >= N, which
`deviceless_env` sets).

libtpu must never look for a TPU or the cloud metadata server here: `deviceless_env`
gives the variables that keep it local, and must be applied before JAX loads (the
planner's main does so first thing). `ALLOW_MULTIPLE_LIBTPU_LOAD` lets several planner
processes (tests, parallel runs) load libtpu at once: without it the second one fails on
libtpu's lock file.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from biobert_jax.plan import chips, env

parse = env.parse
deviceless_env = env.deviceless_env
apply_deviceless_env = env.apply_deviceless_env


def devices(topology: str) -> list[Any]:
  """The devices of `topology` to compile for."""
  kind, dims = parse(topology)
  if kind == "cpu":
    host = jax.devices("cpu")
    if len(host) < dims[0]:
      raise ValueError(f"--topology={topology}: this process has {len(host)} host devices; "
                       f"set XLA_FLAGS=--xla_force_host_platform_device_count={dims[0]} "
                       "before JAX starts")
    return host[:dims[0]]
  from jax.experimental import topologies
  if kind == "h100":
    return _gpu_devices(topology, dims[0])
  name = f"{kind}:{'x'.join(str(d) for d in dims)}"
  n_slices = env.slices(topology)[0]
  extra = {"num_slices": n_slices} if n_slices > 1 else {}
  try:
    return list(topologies.get_topology_desc(topology_name=name, platform="tpu",
                                             **extra).devices)
  except Exception as e:  # libtpu missing or a shape it does not know
    raise ValueError(f"--topology={topology}: libtpu cannot describe it ({e}); is the "
                     "`tpu` extra (libtpu) installed?") from e


GPUS_PER_HOST = 8


def _gpu_devices(topology: str, n: int) -> list[Any]:
  """H100s from XLA's GPU target description (openxla/xla xla/tools/hlo_opt/gpu_specs,
  h100_sxm, plus the CUDA runtime version), through jax's CUDA plugin without a GPU
  (openxla/xla#16913): `jax-cuda12-plugin` and `jax-cuda12-pjrt` of jax's version (the
  `gpu-plan` extra)."""
  from jax.experimental import topologies
  hosts = max(1, -(-n // GPUS_PER_HOST))
  if n > GPUS_PER_HOST and n % GPUS_PER_HOST:
    raise ValueError(f"--topology={topology}: more than {GPUS_PER_HOST} GPUs must be whole "
                     f"hosts of {GPUS_PER_HOST}")
  per_host = min(n, GPUS_PER_HOST)
  with open(os.path.join(os.path.dirname(__file__), "h100_sxm.txtpb"), encoding="utf-8") as f:
    target = f.read()
  try:
    desc = topologies.get_topology_desc(platform="cuda", target_config=target,
                                        topology=f"1x{hosts}x{per_host}")
  except Exception as e:  # no CUDA plugin, or one that cannot describe it
    raise ValueError(f"--topology={topology}: jax's CUDA plugin cannot describe it ({e}); "
                     "install the `gpu-plan` extra (jax-cuda12-plugin, jax-cuda12-pjrt)") from e
  return list(desc.devices)


def chip_of(devices_: list[Any]) -> chips.Chip:
  return chips.chip_for_kind(devices_[0].device_kind)


_HBM_RE = re.compile(r"exceeds available HBM \(([\d.]+)([KMGT])\)")
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_hbm_limit(message: str) -> int | None:
  """The compiler's available HBM per device from its out-of-memory message."""
  m = _HBM_RE.search(message)
  return int(float(m.group(1)) * _UNITS[m.group(2)]) if m else None


@functools.cache
def _usable_hbm(device_kind: str, devices_: tuple[Any, ...]) -> int:
  del device_kind  # the cache key
  mesh = jax.sharding.Mesh(np.asarray(devices_[:1]), ("x",))
  spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  big = jax.ShapeDtypeStruct((1 << 16, 1 << 16), jnp.float32, sharding=spec)  # 16 GiB
  try:
    jax.jit(lambda a: jnp.concatenate([a, a * 2, a * 3]),
            out_shardings=spec).lower(big).compile()
  except Exception as e:  # XLA's JaxRuntimeError
    limit = parse_hbm_limit(str(e))
    if limit:
      return limit
  return 0


def usable_hbm_bytes(devices_: list[Any]) -> int:
  """HBM per device as the TPU compiler counts it (a ~1 s probe compile, cached per
  kind); the chip table's figure per device for other platforms."""
  chip = chip_of(devices_)
  if devices_[0].platform == "tpu":
    limit = _usable_hbm(devices_[0].device_kind, tuple(devices_[:1]))
    if limit:
      return limit
  if devices_[0].platform in ("gpu", "cuda"):
    # JAX's GPU allocator takes 75% of the memory by default (XLA_PYTHON_CLIENT_MEM_FRACTION).
    fraction = float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.75"))
    return int(chip.hbm_bytes * fraction)
  return chip.hbm_bytes // chip.devices_per_chip


__all__ = ["parse", "deviceless_env", "apply_deviceless_env", "devices", "chip_of",
           "usable_hbm_bytes", "parse_hbm_limit"]
