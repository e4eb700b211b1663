"""Search meshes (data, fsdp, tensor), remat, layer scan and micro-batches for a config.

Every candidate gets the analytic estimate (memory, roofline with analytic collectives);
those that fit analytically are ranked fastest first and the best `compile_top` are
compiled through the planner, which has the last word on fitting. The global batch is a
hyper-parameter and stays as configured: the batch per device moves through the mesh and,
for pre-training, `grad_accum_steps` (micro-batches inside the step).
Collectives of an uncompiled candidate: `analytic.collective_bytes`.
"""
from __future__ import annotations

import copy
import itertools
from typing import Any

import ml_collections

from biobert_jax.plan import analytic, planner, topology as topology_lib


def _divisors(n: int) -> list[int]:
  return [d for d in range(1, n + 1) if n % d == 0]


def candidates(config: ml_collections.ConfigDict, n_devices: int) -> list[dict[str, Any]]:
  """Settings to try: every (data, fsdp, tensor) filling the devices, tensor a divisor of
  the heads, batch shards dividing the global batch; remat and micro-batches for
  pre-training."""
  heads_cfg = planner._shape_without_compile(config)
  heads = heads_cfg.bert.num_attention_heads
  batch = int(config.batch_size)
  pretrain = planner.kind_of(config) == "pretrain"
  out = []
  for tensor in _divisors(n_devices):
    if heads % tensor or tensor > 8:
      continue
    for fsdp in _divisors(n_devices // tensor):
      data = n_devices // tensor // fsdp
      if batch % (data * fsdp):
        continue
      per_shard = batch // (data * fsdp)
      for remat, accum in itertools.product((False, True) if pretrain else (False,),
                                            _divisors(per_shard) if pretrain else (1,)):
        if accum > 16:
          continue
        out.append({"data": data, "fsdp": fsdp, "tensor": tensor, "remat": remat,
                    "grad_accum_steps": accum, "scan_layers": True if pretrain else None})
  return out


def configured(config: ml_collections.ConfigDict, c: dict[str, Any]
               ) -> ml_collections.ConfigDict:
  """`config` with candidate `c`'s settings."""
  new = copy.deepcopy(config)
  with new.unlocked():
    new.mesh.data, new.mesh.fsdp, new.mesh.tensor = c["data"], c["fsdp"], c["tensor"]
    if "remat" in new and c["remat"] is not None:
      new.remat = c["remat"]
    if "grad_accum_steps" in new:
      new.grad_accum_steps = c["grad_accum_steps"]
    if "scan_layers" in new and c["scan_layers"] is not None:
      new.scan_layers = c["scan_layers"]
  return new


def estimate(config: ml_collections.ConfigDict, c: dict[str, Any], chip: Any, devices: int
             ) -> dict[str, Any]:
  shape = planner._shape_without_compile(configured(config, c))
  micro = analytic.Shape(shape.bert, shape.global_batch // c["grad_accum_steps"],
                         shape.seq_len, shape.predictions, shape.head_outputs, shape.dtype,
                         shape.remat)
  mem = analytic.memory_per_device(micro, data=c["data"], fsdp=c["fsdp"], tensor=c["tensor"])
  roof = analytic.roofline(shape, chip, devices, analytic.memory_per_device(
      shape, data=c["data"], fsdp=c["fsdp"], tensor=c["tensor"]),
      c["grad_accum_steps"] * analytic.collective_bytes(micro, c["data"], c["fsdp"], c["tensor"]))
  return dict(c, analytic_bytes_per_chip=mem["total"],
              estimated_step_seconds=roof["step_seconds"], estimated_mfu=roof["mfu"],
              tokens_per_second=roof["tokens_per_second"])


def search(config: ml_collections.ConfigDict, topology: str, compile_top: int = 3
           ) -> dict[str, Any]:
  """The plan of the fastest compiled candidate that fits (planner.plan's keys), with
  "search": {"candidates" (those that fit, fastest first: analytic figures, and the
  compiled verdict where compiled), "searched"}; {"fits": False, ...} when none fits."""
  devices = topology_lib.devices(topology)
  chip = topology_lib.chip_of(devices)
  hbm = topology_lib.usable_hbm_bytes(devices)
  rows = [estimate(config, c, chip, len(devices)) for c in candidates(config, len(devices))]
  rows = [dict(r, analytic_fits=r["analytic_bytes_per_chip"] <= hbm) for r in rows]
  rows.sort(key=lambda r: (not r["analytic_fits"], r["estimated_step_seconds"]))
  best = None
  compiled = 0
  for r in rows:
    if compiled >= compile_top or not r["analytic_fits"]:
      break
    compiled += 1
    result = planner.plan(configured(config, r), topology)
    r.update(compiled_fits=result["fits"], compiled_bytes_per_chip=(
        result["per_chip_bytes"]["total"]), compiled_step_seconds=(
            result["estimated_step_seconds"]))
    if result["fits"] and best is None:
      best = result
  fitting = [r for r in rows if r.get("compiled_fits", r["analytic_fits"])]
  found = {"candidates": fitting, "searched": len(rows)}
  if best is None:
    return {"fits": False, "topology": topology, "hbm_bytes_per_chip": hbm, "search": found}
  return dict(best, search=found)


def table(result: dict[str, Any]) -> str:
  found = result["search"]
  lines = [f"search on {result['topology']}: {found['searched']} candidates, "
           f"{len(found['candidates'])} fit (analytic; compiled where marked)",
           "  data fsdp tensor remat accum  GiB/dev(analytic) compiled   step ms   MFU<="]
  for r in found["candidates"][:20]:
    comp = r.get("compiled_bytes_per_chip")
    lines.append(f"  {r['data']:>4} {r['fsdp']:>4} {r['tensor']:>6} {str(r['remat']):>5} "
                 f"{r['grad_accum_steps']:>5}  {r['analytic_bytes_per_chip'] / 2**30:>17.2f} "
                 f"{'-' if comp is None else f'{comp / 2**30:.2f}':>8} "
                 f"{r['estimated_step_seconds'] * 1e3:>9.1f} {r['estimated_mfu']:>6.2f}")
  if result["fits"]:
    lines.append("best (compiled):")
    lines.append(planner.table(result))
  return "\n".join(lines)


__all__ = ["search", "candidates", "table"]
