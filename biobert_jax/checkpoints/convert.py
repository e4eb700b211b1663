"""Format-independent checkpoint conversion: `assemble` / `disassemble` named tensors
through the rule table, checking every shape and reporting loaded/new/unused/ignored.
"""
from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Mapping

import jax
import numpy as np

from biobert_jax import tree
from biobert_jax.checkpoints import names
from biobert_jax.config import BertConfig


class CheckpointError(ValueError):
  """A checkpoint does not fit the model (missing / unexpected / mis-shaped / unreadable)."""


@dataclasses.dataclass
class LoadReport:
  """What a load did. Paths in `loaded`/`new` are ours; `unused`/`ignored` are checkpoint names."""

  path: str
  format: str
  loaded: list[str] = dataclasses.field(default_factory=list)
  new: list[str] = dataclasses.field(default_factory=list)  # not in the checkpoint: fresh init
  unused: list[str] = dataclasses.field(default_factory=list)  # in the checkpoint, not used
  ignored: list[str] = dataclasses.field(default_factory=list)  # optimizer slots, buffers, ties
  notes: list[str] = dataclasses.field(default_factory=list)

  def summary(self, max_names: int = 8) -> str:
    def some(xs: list[str]) -> str:
      more = f", ... (+{len(xs) - max_names})" if len(xs) > max_names else ""
      return ", ".join(xs[:max_names]) + more

    lines = [f"{self.format} checkpoint {self.path}: loaded {len(self.loaded)} tensors"]
    for label, xs in (("new (freshly initialised)", self.new), ("unused", self.unused),
                      ("ignored (optimizer state / buffers / tied copies)", self.ignored)):
      if xs:
        lines.append(f"  {label}: {len(xs)}: {some(xs)}")
    lines += [f"  note: {n}" for n in self.notes]
    return "\n".join(lines)


def model_shapes(config: BertConfig, *, heads: bool) -> dict[str, tuple[int, ...]]:
  """Flat {our path: shape} of `{"encoder": ...}` (+ "cls" when `heads`)."""
  from biobert_jax import models

  if heads:
    tree = models.param_shapes(models.BertForPreTraining(config))
  else:
    tree = {"encoder": models.param_shapes(models.BertEncoder(config))}
  return {p: tuple(s.shape) for p, s in names.flatten(tree).items()}


def fresh_params(config: BertConfig, *, heads: bool, rng: jax.Array) -> dict[str, Any]:
  from biobert_jax import models

  if heads:
    return models.init_params(models.BertForPreTraining(config), rng)
  return {"encoder": models.init_params(models.BertEncoder(config), rng)}


def _fmt_shape(shape: tuple[int, ...]) -> str:
  return "[" + ", ".join(str(d) for d in shape) + "]"


def assemble(config: BertConfig, tensors: Mapping[str, np.ndarray], *, fmt: str, heads: bool,
             report: LoadReport, strict: bool = True, rng: jax.Array | None = None,
             dtype: Any = np.float32) -> dict[str, Any]:
  """Builds our params tree from `tensors` (external names, format `fmt`: "hf" or "tf").

  strict: a missing tensor or an unexpected one is an error; otherwise missing params are
  freshly initialised (`report.new`) and unexpected tensors listed in `report.unused`.
  A shape mismatch is always an error. Float tensors are cast to `dtype`.
  """
  tensors, task_heads = _take_task_heads(config, tensors, fmt, report)
  shapes = model_shapes(config, heads=heads)
  table = names.rules(config, heads=heads)
  assert {r.ours for r in table} == set(shapes), "rule table out of sync with the model"
  flat, missing, mismatched, used = {}, [], [], set()
  for rule in table:
    ext = rule.hf if fmt == "hf" else rule.tf
    if ext not in tensors:
      missing.append(f"{rule.ours} ({fmt} name {ext}): config {_fmt_shape(shapes[rule.ours])}")
      continue
    used.add(ext)
    array = tensors[ext]
    want = names.external_shape(rule, shapes[rule.ours], fmt)
    if tuple(array.shape) != want:
      mismatched.append(f"{rule.ours} ({fmt} name {ext}): checkpoint {_fmt_shape(array.shape)} "
                        f"vs config {_fmt_shape(want)}")
      continue
    array = names.from_external(rule, np.asarray(array), shapes[rule.ours], fmt)
    if np.issubdtype(array.dtype, np.floating) or array.dtype.name == "bfloat16":
      array = array.astype(dtype)
    flat[rule.ours] = array
    report.loaded.append(rule.ours)
  unexpected = sorted(set(tensors) - used)
  problems = []
  if mismatched:
    problems.append("shape mismatch:\n  " + "\n  ".join(mismatched))
    if any("word_embeddings" in m for m in mismatched):
      problems.append(f"(vocab_size={config.vocab_size} in the config does not match the "
                      "word-embedding table: is the config file the one for these weights?)")
  if strict and missing:
    problems.append("missing from the checkpoint:\n  " + "\n  ".join(missing))
  if strict and unexpected:
    problems.append("unexpected in the checkpoint:\n  "
                    + "\n  ".join(f"{n} {_fmt_shape(tensors[n].shape)}" for n in unexpected))
  if problems:
    if not mismatched:
      problems.append("(load(..., strict=False) initialises missing params freshly and skips "
                      "unexpected tensors, listing both in the LoadReport)")
    raise CheckpointError(f"{report.path}: checkpoint does not fit the model:\n"
                          + "\n".join(problems))
  report.unused.extend(unexpected)
  if not missing:
    return {**names.unflatten(flat), **task_heads}
  fresh = fresh_params(config, heads=heads, rng=jax.random.key(0) if rng is None else rng)
  params, merged = tree.merge_params(fresh, names.unflatten(flat),
                                     cast=lambda value, like: value)
  report.new.extend(sorted(merged.new))
  return {**params, **task_heads}


def _take_task_heads(config: BertConfig, tensors: Mapping[str, np.ndarray], fmt: str,
                     report: LoadReport) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Splits fine-tuned task heads (names.TASK_HEADS) off `tensors`.

  A head whose kernel and bias are both present with kernel [C, hidden_size] becomes our
  {"<head>": {"kernel": [H, C], "bias": [C]}} (whether it fits the task model is decided when
  grafting); a complete head of another hidden size is listed in `report.unused` with the
  reason, so a strict load of the encoder never fails on a task head. A kernel without its
  bias (or the reverse) stays an unexpected tensor.
  """
  rest, heads = dict(tensors), {}
  for head in names.TASK_HEADS[fmt]:
    if head.kernel not in rest or head.bias not in rest:
      continue  # half a head is not a head: left to the strict unexpected-tensor check
    present = [head.kernel, head.bias]
    arrays = [rest.pop(n) for n in present]
    converted, why = names.task_head_arrays(head, arrays[0], arrays[1], config.hidden_size)
    if converted is None:
      report.unused.extend(present)
      report.notes.append(f"task head {head.ours} not loaded: {why}")
      continue
    heads[head.ours] = {k: v.astype(np.float32) for k, v in converted.items()}
    report.loaded.extend(f"{head.ours}/{k}" for k in sorted(converted))
    report.notes.append(f"task head {head.ours} [{config.hidden_size}, "
                        f"{converted['bias'].shape[0]}] from {head.kernel} ({head.source}); "
                        "kept by fine-tuning only where the task model's head has that shape")
  return rest, heads


def disassemble(config: BertConfig, params: Mapping[str, Any], *, fmt: str,
                drop_unknown: bool = False) -> tuple[dict[str, np.ndarray], bool]:
  """Our params ({"encoder"} or {"encoder", "cls"}) -> ({external name: array}, has_heads)."""
  params = names.unstack_layers(params) if names.is_stacked(params) else params
  if "embeddings" in params:  # a bare BertEncoder tree
    params = {"encoder": params}
  extra = sorted(set(params) - {"encoder", "cls"})
  if extra and not drop_unknown:
    raise CheckpointError(f"export knows the top-level params 'encoder' and 'cls'; got extra "
                          f"{extra} (pass drop_unknown=True to export without them)")
  heads = "cls" in params
  flat = names.flatten({k: params[k] for k in ("encoder", "cls") if k in params})
  shapes = model_shapes(config, heads=heads)
  bad = [f"{p}: params {_fmt_shape(np.shape(flat[p]))} vs config {_fmt_shape(s)}"
         for p, s in shapes.items() if p in flat and tuple(np.shape(flat[p])) != s]
  missing = sorted(set(shapes) - set(flat))
  unknown = sorted(set(flat) - set(shapes))
  if bad or missing or unknown:
    raise CheckpointError("params do not fit the config: "
                          + "; ".join(bad + [f"missing {p}" for p in missing]
                                      + [f"unknown {p}" for p in unknown]))
  out = {}
  for rule in names.rules(config, heads=heads):
    out[rule.hf if fmt == "hf" else rule.tf] = names.to_external(
        rule, np.asarray(jax.device_get(flat[rule.ours]), dtype=np.float32), fmt)
  return out, heads
