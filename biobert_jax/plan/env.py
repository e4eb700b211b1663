"""The environment that keeps libtpu deviceless and off the network, set before JAX loads.

No JAX import here: `JAX_PLATFORMS` is read when JAX is imported, so the planner's main
imports this module first. `TPU_SKIP_MDS_QUERY` stops libtpu asking the cloud metadata
server about the host; `TPU_ACCELERATOR_TYPE` and `TPU_WORKER_HOSTNAMES` answer what it
would have asked; `ALLOW_MULTIPLE_LIBTPU_LOAD` lets several planner processes (tests,
parallel runs) load libtpu at once (without it the second fails on libtpu's lock file).
"""
from __future__ import annotations

import math
import os
import re

_TPU_RE = re.compile(r"^(v4|v5e|v5p|v5litepod|v6e):(\d+(?:x\d+)*)$")
_CPU_RE = re.compile(r"^cpu:(\d+)$")
_GPU_RE = re.compile(r"^(h100):(\d+)$")
# Multi-slice: `2xv5e:16x16` is two v5e:16x16 slices joined by the data-center network.
_SLICES_RE = re.compile(r"^(\d+)x((?:v4|v5e|v5p):.*)$")
# TPU_ACCELERATOR_TYPE as Cloud names the slice: v4 and v5p count TensorCores (2 a chip).
_ACCELERATOR = {"v4": ("v4", 2), "v5e": ("v5litepod", 1), "v5p": ("v5p", 2)}


def slices(topology: str) -> tuple[int, str]:
  """`2xv5e:16x16` -> (2, "v5e:16x16"); a single slice -> (1, topology)."""
  m = _SLICES_RE.match(topology)
  if not m:
    return 1, topology
  if int(m.group(1)) < 1:
    raise ValueError(f"--topology={topology!r}: the slice count must be at least 1")
  return int(m.group(1)), m.group(2)


def parse(topology: str) -> tuple[str, tuple[int, ...]]:
  """`v5e:4x4` -> ("v5e", (4, 4)); `h100:8` -> ("h100", (8,)); `cpu:8` -> ("cpu", (8,));
  `2xv5e:4x4` -> ("v5e", (4, 4)): one slice's shape (`slices` gives their number)."""
  topology = slices(topology)[1]
  m = _CPU_RE.match(topology)
  if m:
    return "cpu", (int(m.group(1)),)
  m = _GPU_RE.match(topology)
  if m:
    return m.group(1), (int(m.group(2)),)
  m = _TPU_RE.match(topology)
  if not m or m.group(1) not in _ACCELERATOR:
    raise ValueError(f"--topology={topology!r}: expected [<slices>x]<v4|v5e|v5p>:<AxB[xC]> "
                     f"(e.g. v5e:4x4, v4:2x2x1, 2xv5e:16x16), h100:<N> or cpu:<N>")
  return m.group(1), tuple(int(x) for x in m.group(2).split("x"))


def deviceless_env(topology: str) -> dict[str, str]:
  """Environment that keeps libtpu deviceless and off the network for `topology` (for
  several slices, the accelerator type of one: this host's slice)."""
  kind, dims = parse(topology)
  env = {"JAX_PLATFORMS": "cpu", "TPU_SKIP_MDS_QUERY": "1",
         "TPU_WORKER_HOSTNAMES": "localhost", "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}
  if kind == "cpu":
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
      env["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={dims[0]}").strip()
    env["TPU_ACCELERATOR_TYPE"] = "v5litepod-1"
    return env
  if kind == "h100":  # XLA's GPU compiler from jax's CUDA plugin, no GPU: none visible
    env["CUDA_VISIBLE_DEVICES"] = "-1"
    return env
  prefix, per_chip = _ACCELERATOR[kind]
  env["TPU_ACCELERATOR_TYPE"] = f"{prefix}-{math.prod(dims) * per_chip}"
  return env


def apply_deviceless_env(topology: str) -> None:
  """Sets `deviceless_env(topology)` in os.environ. The libtpu variables describe the
  topology compiled for and are always set; JAX_PLATFORMS and XLA_FLAGS set by the caller
  are kept (XLA_FLAGS gains the host device count when it lacks one)."""
  for key, value in deviceless_env(topology).items():
    if key == "JAX_PLATFORMS":
      os.environ.setdefault(key, value)
    else:
      os.environ[key] = value


__all__ = ["parse", "slices", "deviceless_env", "apply_deviceless_env"]
