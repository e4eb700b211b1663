"""Search meshes (data, fsdp, tensor), remat, layer scan and micro-batches for a config.

Every candidate gets the analytic estimate (memory, roofline with analytic collectives);
those that fit analytically are ranked fastest first and the best `compile_top` are
compiled through the planner, which has the last word on fitting. The global batch is a
hyper-parameter and stays as configured: the batch per device moves through the mesh and,
for pre-training, `grad_accum_steps` (micro-batches inside the step).
Collectives of an uncompiled candidate: `analytic.collective_bytes`.

`choose_mesh` is the same search over the devices present, for `config.mesh.auto` in the
trainers (docs/planning.md, "Choosing the mesh in the trainers"): only the mesh axes move.
"""
from __future__ import annotations

import copy
import functools
import itertools
import os
from typing import Any
from collections.abc import Callable, Sequence

import ml_collections

from biobert_jax import sharding
from biobert_jax.config import BertConfig
from biobert_jax.plan import analytic, chips, hlo, planner, topology as topology_lib


def _divisors(n: int) -> list[int]:
  return [d for d in range(1, n + 1) if n % d == 0]


def meshes(n_devices: int, heads: int, batch_sizes: Sequence[int], multiple: int = 1,
           slices: int = 1) -> list[tuple[int, int, int]]:
  """Every (data, fsdp, tensor) filling `n_devices`, tensor ascending then fsdp: tensor
  divides the heads (at most 8), every batch divides by data x fsdp x `multiple`, and
  data is a multiple of the `slices` (only data crosses between slices)."""
  out = []
  for tensor in _divisors(n_devices):
    if heads % tensor or tensor > 8:
      continue
    for fsdp in _divisors(n_devices // tensor):
      data = n_devices // tensor // fsdp
      if data % slices:
        continue
      if not any(int(b) % (data * fsdp * multiple) for b in batch_sizes):
        out.append((data, fsdp, tensor))
  return out


def candidates(config: ml_collections.ConfigDict, n_devices: int, slices: int = 1
               ) -> list[dict[str, Any]]:
  """Settings to try: every mesh of `meshes` for the global batch; remat and
  micro-batches for pre-training."""
  heads = planner._shape_without_compile(config).bert.num_attention_heads
  batch = int(config.batch_size)
  pretrain = planner.kind_of(config) == "pretrain"
  out = []
  for data, fsdp, tensor in meshes(n_devices, heads, [batch], slices=slices):
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
    if "auto" in new.mesh:  # the axes are chosen now
      new.mesh.auto = False
    if "remat" in new and c["remat"] is not None:
      new.remat = c["remat"]
    if "grad_accum_steps" in new:
      new.grad_accum_steps = c["grad_accum_steps"]
    if "scan_layers" in new and c["scan_layers"] is not None:
      new.scan_layers = c["scan_layers"]
  return new


def estimate(config: ml_collections.ConfigDict, c: dict[str, Any], chip: Any, devices: int,
             bert: BertConfig | None = None) -> dict[str, Any]:
  """Candidate `c` with its analytic memory per device and roofline step time (`bert`:
  the model when the config's preset is not it, e.g. a fine-tuning checkpoint's)."""
  shape = planner._shape_without_compile(configured(config, c), bert)
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


def rank(rows: list[dict[str, Any]], budget: float) -> list[dict[str, Any]]:
  """Rows marked `analytic_fits` against `budget` bytes per device, those that fit first,
  fastest estimate first. Equal estimates (compute-bound steps) go to the fewest
  collectives: data before fsdp (per-layer gathers) before tensor (per-layer
  all-reduces), then no remat, then fewer micro-batches."""
  rows = [dict(r, analytic_fits=r["analytic_bytes_per_chip"] <= budget) for r in rows]
  rows.sort(key=lambda r: (not r["analytic_fits"], r["estimated_step_seconds"], r["tensor"],
                           r["fsdp"], bool(r["remat"]), r["grad_accum_steps"]))
  return rows


def search(config: ml_collections.ConfigDict, topology: str, compile_top: int = 3
           ) -> dict[str, Any]:
  """The plan of the fastest compiled candidate that fits (planner.plan's keys), with
  "search": {"candidates" (those that fit, fastest first: analytic figures, and the
  compiled verdict where compiled), "searched"}; {"fits": False, ...} when none fits."""
  devices = topology_lib.devices(topology)
  chip = topology_lib.chip_of(devices)
  hbm = topology_lib.usable_hbm_bytes(devices)
  rows = rank([estimate(config, c, chip, len(devices))
               for c in candidates(config, len(devices), sharding.slice_count(devices))],
              hbm)
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


class NoMeshFits(ValueError):
  """No (data, fsdp, tensor) over the devices present holds the batches and fits."""


def device_memory_limit(devices: Sequence[Any]) -> int | None:
  """Bytes one device may hold (`memory_stats()["bytes_limit"]`); None where the platform
  reports none (host devices)."""
  for d in devices:
    try:
      stats = d.memory_stats()
    except Exception:  # noqa: BLE001  not addressable here, or not implemented
      continue
    if stats and stats.get("bytes_limit"):
      return int(stats["bytes_limit"])
  return None


def chip_for_devices(devices: Sequence[Any]) -> chips.Chip:
  """The chip table's entry for an accelerator; the neutral chips.HOST_CHIP for host devices
  and for kinds the table lacks (their ranking is the tie-break alone)."""
  if devices[0].platform == "cpu":
    return chips.HOST_CHIP
  try:
    return chips.chip_for_kind(devices[0].device_kind)
  except ValueError:
    return chips.HOST_CHIP


def compiled_bytes(config: ml_collections.ConfigDict, devices: Sequence[Any],
                   **built: Any) -> int:
  """Peak bytes per device of the trainer's step for `config` on `devices`, compiled
  through the trainer's builder (`built`: planner.compile_step's bert / setup)."""
  programs, _, _ = planner.compile_step(config, list(devices), cache=True, **built)
  return max(hlo.memory(p)["total"] for p in programs)


def choose_mesh(config: ml_collections.ConfigDict, devices: Sequence[Any], *,
                bert: BertConfig | None = None, batch_size: int | None = None,
                eval_batch_size: int | None = None,
                compile_fn: Callable[[ml_collections.ConfigDict], int] | None = None,
                compile_top: int = 2, memory_limit: int | None = None) -> dict[str, Any]:
  """The mesh for `config` on `devices`: `meshes` ranked by `estimate` and `rank`, remat,
  layer scan and micro-batches as configured (results do not change). Where the devices
  report a memory limit, the best `compile_top` are compiled (`compile_fn(config)` ->
  bytes per device; default `compiled_bytes`) and the first that fits is taken; without
  one (host devices) the analytic ranking decides against the host's memory.

  Returns {"data", "fsdp", "tensor", "estimated_step_seconds", "bytes_per_device",
  "bytes_from" ("compiled" | "analytic"), "memory_limit", "devices", "device_kind",
  "searched"}. Raises NoMeshFits.
  """
  devices = list(devices)
  n = len(devices)
  if batch_size is not None and int(batch_size) != int(config.batch_size):
    config = copy.deepcopy(config)
    with config.unlocked():
      config.batch_size = int(batch_size)
  pretrain = planner.kind_of(config) == "pretrain"
  accum = int(config.get("grad_accum_steps", 1)) if pretrain else 1
  fixed = {"remat": bool(config.get("remat", False)), "grad_accum_steps": accum,
           "scan_layers": config.get("scan_layers")}
  bert = bert or planner._shape_without_compile(config).bert
  evals = [int(eval_batch_size)] if eval_batch_size else []
  found = [m for m in meshes(n, bert.num_attention_heads, [config.batch_size], accum,
                            sharding.slice_count(devices))
           if not any(b % (m[0] * m[1]) for b in evals)]
  limit = memory_limit if memory_limit is not None else device_memory_limit(devices)
  local = sum(1 for d in devices if d.process_index == devices[0].process_index)
  budget = limit if limit is not None else (
      os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // max(1, local))
  chip = chip_for_devices(devices)
  rows = rank([estimate(config, dict(zip(("data", "fsdp", "tensor"), m), **fixed), chip, n,
                        bert=bert) for m in found], budget)
  fitting = [r for r in rows if r["analytic_fits"]]
  what = (f"config.mesh.auto: no (data, fsdp, tensor) over {n} {devices[0].device_kind} "
          f"devices")
  if not fitting:
    if rows:
      why = f"fits {budget / 2**30:.2f} GiB per device (analytic)"
    else:
      evals_text = f" and eval_batch_size={evals[0]}" if evals else ""
      why = (f"divides batch_size={config.batch_size} (x grad_accum_steps={accum})"
             f"{evals_text} with tensor dividing the {bert.num_attention_heads} heads")
    raise NoMeshFits(f"{what} {why}: set config.mesh.data/fsdp/tensor, or change the batch "
                     "or remat")
  info = {"memory_limit": limit, "devices": n, "device_kind": devices[0].device_kind,
          "searched": len(rows)}

  def chosen(r: dict[str, Any], used: float, source: str) -> dict[str, Any]:
    return dict(info, data=r["data"], fsdp=r["fsdp"], tensor=r["tensor"],
                estimated_step_seconds=r["estimated_step_seconds"],
                bytes_per_device=int(used), bytes_from=source)

  if limit is None:
    return chosen(fitting[0], fitting[0]["analytic_bytes_per_chip"], "analytic")
  compile_fn = compile_fn or functools.partial(compiled_bytes, devices=devices)
  refused = []
  for r in fitting[:compile_top]:
    try:
      used = compile_fn(configured(config, r))
    except planner.DoesNotFit:
      used = None
    if used is not None and used <= limit:
      return chosen(r, used, "compiled")
    refused.append(f"{r['data']}x{r['fsdp']}x{r['tensor']}")
  raise NoMeshFits(f"{what} fits {limit / 2**30:.2f} GiB per device: the compiler "
                   f"refused the best {len(refused)} ({', '.join(refused)}); set "
                   "config.mesh.data/fsdp/tensor, or change the batch or remat")


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


__all__ = ["search", "candidates", "meshes", "rank", "choose_mesh", "NoMeshFits", "table"]
