"""Accelerator figures the planner's roofline uses, per chip, with their public sources.

Figures are per chip as the vendors publish them. `devices_per_chip` says how many JAX
devices one chip is in the planner's topology: the deviceless v4 topology of libtpu
0.0.42 lists each TensorCore as a device (`v4:2x2x1`: 4 chips, 8 devices, 15.25 GiB each
in the compiler's own limit), v5e and v5p list chips.

The usable HBM per device is not in this table: it is the compiler's own limit, read from
its refusal of an oversized program (`biobert_jax.plan.topology.usable_hbm_bytes`).

Sources (consulted for this table; figures as published, dense bf16):
- v4: cloud.google.com/tpu/docs/v4 ("275 TFLOPs bf16 per chip, 32 GiB HBM2 at 1,200
  GBps"), ICI: Jouppi et al., "TPU v4", ISCA 2023 (6 links per chip, 3D torus), and the
  per-link figure of the JAX scaling book (jax-ml.github.io/scaling-book, "How to think
  about TPUs": 4.5e10 B/s one way per link).
- v5e: cloud.google.com/tpu/docs/v5e ("197 TFLOPs bf16, 16 GiB HBM2 at 819 GBps,
  ICI 1,600 Gbps"), 4 links per chip (2D torus); scaling book: 4.5e10 B/s one way/link.
- v5p: cloud.google.com/tpu/docs/v5p ("459 TFLOPs bf16, 95 GiB HBM2e at 2,765 GBps,
  ICI 4,800 Gbps"), 6 links per chip (3D torus); scaling book: 9e10 B/s one way/link.
- h100 (SXM): NVIDIA H100 Tensor Core GPU datasheet ("989 TFLOPS bf16 dense, 80 GB HBM3
  at 3.35 TB/s, NVLink 900 GB/s" total over 18 links, both directions).
"""
from __future__ import annotations

import dataclasses
import math

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str
  bf16_flops: float          # peak dense bf16 FLOP/s per chip
  hbm_bytes: int             # HBM per chip, as sold
  hbm_bandwidth: float       # bytes/s per chip
  link_bandwidth: float      # bytes/s one way, per ICI (or NVLink) link
  links: int                 # links per chip
  devices_per_chip: int = 1  # JAX devices per chip in the planner's topology
  source: str = ""

  switched: bool = False      # links go through a switch (NVSwitch): all carry a collective

  @property
  def ring_bandwidth(self) -> float:
    """Bytes/s one chip sends in a collective, the rate the roofline gives every collective:
    a bidirectional ring along one torus axis uses two links one way each (TPU); behind
    NVSwitch every link carries it (H100: 18 x 25 GB/s = 450 GB/s one way)."""
    return (self.links if self.switched else 2.0) * self.link_bandwidth


CHIPS: dict[str, Chip] = {
    "v4": Chip("v4", 275e12, 32 * GIB, 1.2e12, 4.5e10, 6, devices_per_chip=2,
               source="cloud.google.com/tpu/docs/v4; scaling book (ICI per link)"),
    "v5e": Chip("v5e", 197e12, 16 * GIB, 8.19e11, 4.5e10, 4,
                source="cloud.google.com/tpu/docs/v5e; scaling book (ICI per link)"),
    "v5p": Chip("v5p", 459e12, 95 * GIB, 2.765e12, 9e10, 6,
                source="cloud.google.com/tpu/docs/v5p; scaling book (ICI per link)"),
    "h100": Chip("h100", 989e12, 80 * 10**9, 3.35e12, 25e9, 18, switched=True,
                 source="NVIDIA H100 datasheet (SXM5)"),
    # The host CPU: no published peak; a nominal 2-core AVX2 figure so that `cpu:N` plans
    # print something. Its times are not estimates of anything.
    "cpu": Chip("cpu", 1e11, 16 * GIB, 2e10, 1e10, 1, source="nominal, not a measurement"),
}

# Host devices share one machine's cores and memory, so no per-device roofline of theirs
# means anything: the trainers' mesh search gives every mesh the same compute-only time,
# and its tie-break decides.
HOST_CHIP = Chip("host", 1e11, 0, math.inf, math.inf, 1,
                 source="neutral: ranks by the tie-break alone")

# JAX device_kind -> chip name.
_KINDS = {"TPU v4": "v4", "TPU v5 lite": "v5e", "TPU v5e": "v5e", "TPU v5": "v5p",
          "TPU v5p": "v5p", "NVIDIA H100 80GB HBM3": "h100", "cpu": "cpu"}


def chip_for_kind(device_kind: str) -> Chip:
  """The table's entry for a JAX `device_kind`."""
  name = _KINDS.get(device_kind)
  if name is None and device_kind.lower().startswith("nvidia h100"):
    name = "h100"
  if name is None:
    raise ValueError(f"no chip figures for device kind {device_kind!r}; known: "
                     f"{', '.join(sorted(_KINDS))} (add it to biobert_jax/plan/chips.py)")
  return CHIPS[name]


__all__ = ["Chip", "CHIPS", "HOST_CHIP", "chip_for_kind", "GIB"]
