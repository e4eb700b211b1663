"""`config.mesh.auto` in the trainers: the planner's mesh search over the devices present,
its choice said in one line and recorded in the workdir (docs/planning.md, "Choosing the
mesh in the trainers").

A resumed run takes the recorded mesh when it still fits the devices and batches, so it
never re-lays out what it checkpointed under another; the search is deterministic too.
"""
from __future__ import annotations

import copy
import json
from typing import Any
from collections.abc import Sequence

import ml_collections
from absl import logging

from biobert_jax import fs
from biobert_jax.trainers import workdir as workdir_lib

MESH_NAME = "mesh.json"
AXES = ("data", "fsdp", "tensor")


def is_auto(config: ml_collections.ConfigDict) -> bool:
  return "mesh" in config and bool(config.mesh.get("auto", False))


def recorded(workdir: str) -> dict[str, Any] | None:
  """The choice an earlier auto run recorded in `workdir`, or None."""
  path = fs.join(workdir, MESH_NAME)
  if not fs.exists(path):
    return None
  with fs.open(path, encoding="utf-8") as f:
    return json.load(f)


def _still_valid(choice: dict[str, Any], devices: Sequence[Any],
                 batch_sizes: Sequence[int], multiple: int) -> bool:
  shards = choice["data"] * choice["fsdp"]
  return (choice.get("devices") == len(devices)
          and choice.get("device_kind") == devices[0].device_kind
          and choice["data"] * choice["fsdp"] * choice["tensor"] == len(devices)
          and int(batch_sizes[0]) % (shards * multiple) == 0
          and all(int(b) % shards == 0 for b in batch_sizes[1:]))


def describe(choice: dict[str, Any]) -> str:
  """The one line a run prints about its chosen mesh."""
  limit = choice.get("memory_limit")
  of = f" of {limit / 2**30:.2f} GiB" if limit else ""
  return (f"mesh auto ({choice['source']}): data={choice['data']} fsdp={choice['fsdp']} "
          f"tensor={choice['tensor']} on {choice['devices']} {choice['device_kind']} "
          f"devices, estimated step {choice['estimated_step_seconds'] * 1e3:.3g} ms, "
          f"{choice['bytes_per_device'] / 2**30:.3f} GiB per device "
          f"({choice['bytes_from']}){of}, best of {choice['searched']} meshes")


def resolve(config: ml_collections.ConfigDict, workdir: str, devices: Sequence[Any], *,
            bert: Any, setup: Any = None, batch_size: int | None = None,
            eval_batch_size: int | None = None, **search_kwargs: Any
            ) -> tuple[ml_collections.ConfigDict, dict[str, Any] | None]:
  """(`config`, None) unless config.mesh.auto; else (a copy with mesh.data/fsdp/tensor
  set, the choice): the workdir's recorded one when it still fits, or the search's
  (`search.choose_mesh` on the trainer's model `bert`; candidates compile through the
  trainer's builder with what it built: `bert`, fine-tuning's `setup`). Prints the choice
  in one line."""
  if not is_auto(config):
    return config, None
  import functools

  from biobert_jax.plan import search  # the planner loads on demand only
  search_kwargs.setdefault("compile_fn", functools.partial(
      search.compiled_bytes, devices=list(devices), bert=bert, setup=setup))
  devices = list(devices)
  train_batch = int(batch_size if batch_size is not None else config.batch_size)
  batches = [train_batch] + ([int(eval_batch_size)] if eval_batch_size else [])
  multiple = int(config.get("grad_accum_steps", 1) or 1)
  before = None if config.get("overwrite", False) else recorded(workdir)
  if before is not None and _still_valid(before, devices, batches, multiple):
    choice = dict(before, source="recorded")
  else:
    choice = dict(search.choose_mesh(config, devices, bert=bert, batch_size=train_batch,
                                     eval_batch_size=eval_batch_size, **search_kwargs),
                  source="searched")
  line = describe(choice)
  logging.info("%s", line)
  print(line, flush=True)
  new = copy.deepcopy(config)
  with new.unlocked():
    for axis in AXES:
      new.mesh[axis] = int(choice[axis])
  return new, choice


def record(workdir: str, choice: dict[str, Any] | None, write: bool = True) -> None:
  """Writes the choice to <workdir>/mesh.json (after the workdir's config check)."""
  if choice is not None and write:
    workdir_lib.write_json(fs.join(workdir, MESH_NAME),
                           {k: v for k, v in choice.items() if k != "source"})


__all__ = ["resolve", "record", "recorded", "describe", "is_auto", "MESH_NAME"]
