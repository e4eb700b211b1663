"""Compile a trainer's real step for a topology, deviceless, and say whether it fits and how
fast it could run.

The step is the one the trainer jits, through the trainer's own builder
(`trainers.pretrain.build_program`, `trainers.finetune.build_program`), on the topology's
devices: the same function, shardings, mesh and batch layout, and the runtime those
devices' platform picks (on TPU: one program, `jax.random` dropout). Beside the compiler's
figures: the analytic estimate (`plan.analytic`) and a roofline from the chip table.
"""
from __future__ import annotations

import math
import os
import re
import time
from typing import Any

import jax
import ml_collections
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from biobert_jax import sharding
from biobert_jax.config import DEFAULT_VOCAB_SIZE, BertConfig
from biobert_jax.plan import analytic, hlo, topology as topology_lib
from biobert_jax.train import state as state_lib

# The project's pre-training input pipeline, measured on the 2-core reference box
# (WORKSPACE_NOTES, pipeline section, session 9: `experiments.benchmarks.pipeline`, batch
# 256 x 128): examples/s x 128 tokens (padded).
PIPELINE_TOKENS_PER_SECOND = {"dynamic, 1 thread": 3.6e3 * 128,
                              "dynamic, 2 workers": 8.5e3 * 128,
                              "static TFRecord": 98e3 * 128}
PUBMED_ABSTRACTS = 36e6       # PubMed baseline, ~36M citations with abstracts
PIECES_PER_ABSTRACT = 330     # title + abstract, ~250 words at ~1.3 WordPieces per word
CHIPS_PER_HOST = {"v4": 4, "v5e": 4, "v5p": 4, "h100": 8, "cpu": 1}
_OOM = re.compile(r"RESOURCE_EXHAUSTED|Ran out of memory|out of memory", re.I)
_REQUIRED = re.compile(r"required for [^(]*\(([\d.]+)([KMGT])\)")


class DoesNotFit(Exception):
  """The compiler refused the program for memory; `message` says by how much."""


def kind_of(config: ml_collections.ConfigDict) -> str:
  if "task" in config:
    return "finetune"
  if "max_predictions_per_seq" in config:
    return "pretrain"
  raise ValueError("--config: neither a pre-training config (max_predictions_per_seq) nor "
                   "a fine-tuning config (task)")


def _pretrain_bert(config: ml_collections.ConfigDict) -> BertConfig:
  from biobert_jax.trainers import pretrain
  vocab = (pretrain.vocab_size_of(config.vocab_path, config.lowercase)
           if config.vocab_path and os.path.exists(config.vocab_path) else DEFAULT_VOCAB_SIZE)
  return pretrain.model_config(config, vocab)


def _compile(jitted: Any, args: tuple, cache: bool = False) -> Any:
  """Compiles outside the persistent cache: a deviceless executable cannot be loaded
  back from it (no client), and it would only fill the cache of real runs. `cache`: on
  the devices present (the trainers' mesh search), where the run then loads it."""
  if cache:
    return _lower_compile(jitted, args)
  cached = jax.config.jax_enable_compilation_cache
  # JAX decides once whether the cache is in use: reset that decision around the switch.
  jax.config.update("jax_enable_compilation_cache", False)
  jax_cache.reset_cache()
  try:
    return _lower_compile(jitted, args)
  finally:
    jax.config.update("jax_enable_compilation_cache", cached)
    jax_cache.reset_cache()


def _lower_compile(jitted: Any, args: tuple) -> Any:
  try:
    return jitted.lower(*args).compile()
  except Exception as e:  # XLA raises JaxRuntimeError
    if _OOM.search(str(e)):
      raise DoesNotFit(str(e).splitlines()[0][:400]) from e
    raise


def compile_step(config: ml_collections.ConfigDict, devices: list[Any], *,
                 bert: BertConfig | None = None, setup: Any = None, cache: bool = False
                 ) -> tuple[list[Any], analytic.Shape, Any]:
  """(compiled programs of one train step, the analytic shape, the mesh). A trainer
  passes what it built already: pre-training's `bert`, fine-tuning's `setup`."""
  from biobert_jax.trainers import finetune, pretrain
  if kind_of(config) == "pretrain":
    bert = bert or _pretrain_bert(config)
    program = pretrain.build_program(config, bert, devices)
    shape = analytic.Shape(bert, int(config.batch_size), int(config.max_seq_length),
                           int(config.max_predictions_per_seq), dtype=config.dtype,
                           remat=bool(config.remat))
    return ([_compile(program.train_step, program.abstract_args(config), cache)], shape,
            program.mesh)
  setup = setup or finetune.build(config)
  n_train = setup.splits["train"].num_features
  batch_size = min(int(config.batch_size), n_train)
  total = max(1, n_train // batch_size) * int(config.num_epochs)
  program = finetune.build_program(setup, config, batch_size, total, devices)
  state = state_lib.with_shardings(program.abstract_state, program.shardings)
  batch = program.abstract_batch(setup, batch_size, int(config.max_seq_length))
  labels = len(setup.data.labels) if setup.data.labels else 2
  shape = analytic.Shape(setup.bert_config, batch_size, int(config.max_seq_length), 0,
                         head_outputs=labels, dtype=config.dtype)
  step = program.train_step
  if hasattr(step, "grad"):  # the CPU runtime's two programs
    grads = state_lib.with_shardings(program.abstract_params, program.shardings["params"])
    loss = {"loss": jax.ShapeDtypeStruct((), "float32")}
    return ([_compile(step.grad, (state, batch), cache),
             _compile(step.update, (state, grads, loss), cache)], shape, program.mesh)
  return [_compile(step, (state, batch), cache)], shape, program.mesh


def _gib(n: float) -> str:
  return f"{n / (1 << 30):.2f} GiB"


def _refusal_bytes(message: str) -> int | None:
  m = _REQUIRED.search(message)
  return int(float(m.group(1)) * topology_lib._UNITS[m.group(2)]) if m else None


def plan(config: ml_collections.ConfigDict, topology: str) -> dict[str, Any]:
  """The plan of `config` on `topology` (see experiments/plan.py for the JSON's keys)."""
  devices = topology_lib.devices(topology)
  chip = topology_lib.chip_of(devices)
  hbm = topology_lib.usable_hbm_bytes(devices)
  t0 = time.time()
  refusal, programs, mesh = None, [], None
  try:
    programs, shape, mesh = compile_step(config, devices)
  except DoesNotFit as e:
    refusal = str(e)
    shape = None
  out: dict[str, Any] = {"topology": topology, "platform": devices[0].platform,
                         "device_kind": devices[0].device_kind, "chip": chip.name,
                         "devices": len(devices),
                         "slices": sharding.slice_count(devices),
                         "chips": len(devices) // chip.devices_per_chip,
                         "kind": kind_of(config), "compile_seconds": time.time() - t0,
                         "hbm_bytes_per_chip": hbm}
  mesh_cfg = config.mesh
  if mesh is not None:
    out["mesh"] = {k: int(v) for k, v in mesh.shape.items()}
  else:
    d, f, t = sharding.resolve_mesh_shape(mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor,
                                          len(devices))
    out["mesh"] = {"data": d, "fsdp": f, "tensor": t}
  if shape is None:
    shape = _shape_without_compile(config)
  m = out["mesh"]
  est = analytic.memory_per_device(shape, data=m["data"], fsdp=m["fsdp"], tensor=m["tensor"])
  out["analytic_bytes_per_chip"] = est["total"]
  out["analytic_breakdown"] = est
  out["model"] = analytic.as_dict(shape)
  flops = analytic.flops_per_step(shape)
  out["flops_per_step"] = flops["model"]
  out["hardware_flops_per_step"] = flops["hardware"]
  if refusal is not None:
    needed = _refusal_bytes(refusal)
    out.update(fits=False, refusal=refusal, collectives={},
               per_chip_bytes={"arguments": None, "temporaries": needed, "outputs": None,
                               "total": needed})
    coll_bytes = analytic.collective_bytes(shape, m["data"], m["fsdp"], m["tensor"])
    out["collectives_analytic_bytes"] = coll_bytes
  else:
    mems = [hlo.memory(c) for c in programs]
    per_chip = max(mems, key=lambda x: x["total"])
    colls: dict[str, dict[str, int]] = {}
    for c in programs:
      for k, v in hlo.collectives(c.as_text()).items():
        if not v["ops"]:
          continue
        acc = colls.setdefault(k, {"count": 0, "bytes": 0, "ops": 0})
        for field in acc:
          acc[field] += v[field]
    coll_bytes = float(sum(v["bytes"] for v in colls.values()))
    out.update(per_chip_bytes=per_chip, collectives=colls, fits=per_chip["total"] <= hbm,
               programs=len(programs))
    out["analytic_ratio"] = per_chip["total"] / est["total"] if est["total"] else None
  roof = analytic.roofline(shape, chip, len(devices), est, coll_bytes)
  if out["slices"] > 1:
    roof["note"] = ("the data axis's collectives cross the network between slices; the "
                    "roofline counts every collective at ICI bandwidth (optimistic)")
  out.update(estimated_step_seconds=roof["step_seconds"], estimated_mfu=roof["mfu"],
             tokens_per_second=roof["tokens_per_second"], roofline=roof)
  hosts = max(1, out["chips"] // CHIPS_PER_HOST.get(chip.name, 1))
  out["hosts"] = hosts
  out["input_tokens_per_second_per_host"] = roof["tokens_per_second"] / hosts
  out["pipeline_tokens_per_second_measured"] = PIPELINE_TOKENS_PER_SECOND
  if out["kind"] == "finetune" and str(config.task) in ("ner", "multi_ner"):
    out["annotation"] = annotation_estimate(shape, config, chip, len(devices))
  return out


def _shape_without_compile(config: ml_collections.ConfigDict,
                           bert: BertConfig | None = None) -> analytic.Shape:
  if kind_of(config) == "pretrain":
    return analytic.Shape(bert or _pretrain_bert(config), int(config.batch_size),
                          int(config.max_seq_length), int(config.max_predictions_per_seq),
                          dtype=config.dtype, remat=bool(config.remat))
  bert = bert or BertConfig.preset(config.model_preset)
  return analytic.Shape(bert, int(config.batch_size), int(config.max_seq_length), 0,
                        dtype=config.dtype)


def annotation_estimate(shape: analytic.Shape, config: ml_collections.ConfigDict, chip: Any,
                        devices: int) -> dict[str, float]:
  """Documents/s and hours to tag PubMed with this model's forward pass at the roofline."""
  length, stride = int(config.max_seq_length), int(config.doc_stride)
  windows = 1 + max(0, math.ceil((PIECES_PER_ABSTRACT - length) / max(1, stride)))
  fwd = analytic.Shape(shape.bert, shape.global_batch, length, 0, shape.head_outputs,
                       dtype=shape.dtype, training=False)
  mem = analytic.memory_per_device(fwd, data=devices, fsdp=1, tensor=1)
  roof = analytic.roofline(fwd, chip, devices, mem, 0.0)
  windows_per_s = roof["tokens_per_second"] / length
  docs = windows_per_s / windows
  return {"windows_per_document": windows, "documents_per_second": docs,
          "hours_for_pubmed": PUBMED_ABSTRACTS / docs / 3600}


def fits_line(result: dict[str, Any]) -> str:
  """The one line exit 3 prints: what does not fit, and by how much."""
  hbm = result["hbm_bytes_per_chip"]
  need = result["per_chip_bytes"]["total"]
  where = (f"{result['kind']} step (batch {result['model']['global_batch']} x "
           f"{result['model']['seq_len']}) on {result['topology']} mesh {result['mesh']}")
  if result.get("refusal"):
    what = ("the compiler refused it: " + (f"{_gib(need)} of temporaries per device"
                                           if need else result["refusal"]))
  else:
    what = f"it needs {_gib(need)} per device"
  over = f" ({_gib(need - hbm)} over)" if need else ""
  return f"does not fit: {where}: {what} against {_gib(hbm)} of HBM{over}"


def table(result: dict[str, Any]) -> str:
  """A readable summary of `plan`'s result."""
  r, rows = result, []
  pc = r["per_chip_bytes"]
  rows.append(f"topology {r['topology']} ({r['chips']} x {r['chip']}, {r['devices']} devices, "
              f"{r['hosts']} hosts)  mesh {r['mesh']}  kind {r['kind']}")
  m = r["model"]
  rows.append(f"model L={m['layers']} H={m['hidden']} params {m['params'] / 1e6:.1f}M  "
              f"batch {m['global_batch']} x {m['seq_len']}  dtype {m['dtype']}  "
              f"remat {m['remat']}")
  fmt = lambda v: "-" if v is None else _gib(v)  # noqa: E731
  rows.append(f"per device: arguments {fmt(pc.get('arguments'))}  temporaries "
              f"{fmt(pc.get('temporaries'))}  outputs {fmt(pc.get('outputs'))}  total "
              f"{fmt(pc.get('total'))}  of {_gib(r['hbm_bytes_per_chip'])} HBM: "
              f"{'fits' if r['fits'] else 'does not fit'}")
  est = r["analytic_breakdown"]
  ratio = r.get("analytic_ratio")
  rows.append("analytic: " + "  ".join(f"{k} {_gib(v)}" for k, v in est.items())
              + (f"  (compiled / analytic {ratio:.2f})" if ratio else ""))
  for k, v in r["collectives"].items():
    rows.append(f"  {k:<19} {v['count']:>6} per step ({v['ops']} in the program)  "
                f"{v['bytes'] / 1e6:10.1f} MB")
  rf = r["roofline"]
  rows.append(f"FLOPs/step {r['flops_per_step']:.3e} (hardware {r['hardware_flops_per_step']:.3e})"
              f"  roofline step {rf['step_seconds'] * 1e3:.1f} ms ({rf['bound']}-bound: compute "
              f"{rf['compute_seconds'] * 1e3:.1f}, HBM {rf['hbm_seconds'] * 1e3:.1f}, "
              f"collectives {rf['collective_seconds'] * 1e3:.1f} ms)")
  rows.append(f"MFU <= {r['estimated_mfu']:.2f}  tokens/s {r['tokens_per_second']:.3g}  "
              f"input per host {r['input_tokens_per_second_per_host']:.3g} tokens/s (pipeline "
              "measured on 2 cores: " + ", ".join(
                  f"{k} {v:.2g}" for k, v in r["pipeline_tokens_per_second_measured"].items())
              + ")")
  if "annotation" in r:
    a = r["annotation"]
    rows.append(f"annotation: {a['documents_per_second']:.3g} documents/s, "
                f"{a['hours_for_pubmed']:.2f} h for 36M PubMed abstracts "
                f"({a['windows_per_document']} windows each)")
  rows.append(f"compile {r['compile_seconds']:.1f} s")
  return "\n".join(rows)


__all__ = ["plan", "table", "fits_line", "compile_step", "DoesNotFit", "kind_of"]
