"""Parameter-tree surgery on '/'-joined paths: graft a pre-trained encoder into a task model,
grow embedding tables before grafting, freeze by pattern.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

import jax
import numpy as np
from biobert_jax import fs
from biobert_jax.config import BertConfig
from biobert_jax.tree import flatten, matches_any, merge_params, shape_of as _shape, unflatten

WORD_EMBEDDINGS = "encoder/embeddings/word_embeddings/embedding"
POSITION_EMBEDDINGS = "encoder/embeddings/position_embeddings/embedding"
MLM_OUTPUT_BIAS = "cls/predictions/output_bias"
# Heads of our task models: everything outside "encoder" that is not a pre-training head.
_PRETRAINING_HEADS = ("cls",)


def _with_encoder_scope(params: Any) -> dict[str, Any]:
  """Accepts either a full tree ({"encoder": ..., "cls": ...}) or a bare encoder tree."""
  params = dict(params)
  if "encoder" not in params and "embeddings" in params:
    return {"encoder": params}
  return params



@dataclasses.dataclass
class SurgeryReport:
  """What `graft_encoder` did, path by path (shapes as lists, JSON-able)."""

  loaded: dict[str, list[int]] = dataclasses.field(default_factory=dict)
  new: dict[str, list[int]] = dataclasses.field(default_factory=dict)
  reinitialized: dict[str, list[int]] = dataclasses.field(default_factory=dict)
  dropped: dict[str, list[int]] = dataclasses.field(default_factory=dict)
  # Task heads of a fine-tuned checkpoint that this task model cannot use (no such head, or
  # another shape: other labels, other pooling); shapes are the checkpoint's.
  unused: dict[str, list[int]] = dataclasses.field(default_factory=dict)
  notes: list[str] = dataclasses.field(default_factory=list)

  def to_dict(self) -> dict[str, Any]:
    counts = {k: {"tensors": len(v), "params": int(sum(np.prod(s) for s in v.values()))}
              for k, v in self._sections().items()}
    return {"counts": counts, **self._sections(), "notes": list(self.notes)}

  def _sections(self) -> dict[str, dict[str, list[int]]]:
    return {"loaded": self.loaded, "new": self.new, "reinitialized": self.reinitialized,
            "dropped": self.dropped, "unused": self.unused}

  def format(self, max_rows: int = 12) -> str:
    """Human-readable summary; every non-loaded path is listed (they are the surprises)."""
    lines = ["parameter surgery:"]
    for name, section in self._sections().items():
      n = int(sum(np.prod(s) for s in section.values()))
      lines.append(f"  {name}: {len(section)} tensors, {n:,} params")
      rows = sorted(section.items())
      limit = max_rows if name == "loaded" else len(rows)
      for path, shape in rows[:limit]:
        lines.append(f"    {path} {tuple(shape)}")
      if len(rows) > limit:
        lines.append(f"    ... {len(rows) - limit} more")
    lines += [f"  note: {n}" for n in self.notes]
    return "\n".join(lines)

  def save(self, path: str | os.PathLike) -> None:
    with fs.open(path, "w", encoding="utf-8") as f:
      json.dump(self.to_dict(), f, indent=2, sort_keys=True)
      f.write("\n")


def _mismatch_message(path: str, task_shape: tuple, ckpt_shape: tuple) -> str:
  msg = (f"shape mismatch at {path}: task model expects {task_shape}, checkpoint has "
         f"{ckpt_shape}")
  if path == WORD_EMBEDDINGS and task_shape[1:] == ckpt_shape[1:]:
    msg += (f". The vocabularies differ ({ckpt_shape[0]} rows in the checkpoint vs "
            f"{task_shape[0]} in the task model): add tokens with "
            "biobert_jax.checkpoints.surgery.extend_vocab(config, params, num_new) before "
            "grafting, or use the checkpoint's own vocab.txt")
  elif path == POSITION_EMBEDDINGS and task_shape[1:] == ckpt_shape[1:]:
    msg += (". max_position_embeddings differs: use "
            "biobert_jax.checkpoints.surgery.extend_position_embeddings first")
  else:
    msg += " (different hidden size / layer layout? build the task model from the " \
           "checkpoint's own BertConfig)"
  return msg


def graft_encoder(task_params: Any, pretrained_params: Any, *, keep: Iterable[str] = (),
                  keep_fitting: Iterable[str] = (), reinit: Iterable[str] = (),
                  head_labels: Mapping[str, Sequence[str]] | None = None,
                  checkpoint_labels: Mapping[str, Sequence[str]] | None = None,
                  keep_unnamed: bool = False,
                  ) -> tuple[dict[str, Any], SurgeryReport]:
  """Copies a pre-trained encoder into freshly initialised task params.

  Args:
    task_params: the task model's initialised params, {"encoder": ..., "<head>": ...}.
    pretrained_params: a checkpoint's params as `checkpoints.load` returns them
      ({"encoder": ..., "cls": ...}); a bare encoder tree is accepted too.
    keep: regexes (re.search on '/'-joined paths) of *non-encoder* subtrees to copy from the
      checkpoint as well when it has them with the same path, e.g. "^classifier/" to continue
      from an earlier fine-tuning. By default only `encoder/...` is copied and heads stay fresh.
      A shape mismatch is an error.
    keep_fitting: names of top-level task heads (e.g. "qa_outputs", "classifier") to copy when
      the checkpoint has that head with every leaf of the task's shape (a BioBERT+SQuAD QA
      head, a run_re classifier with the same labels). A head that does not fit as a whole
      stays fresh and its checkpoint leaves are listed in `report.unused`, never half-copied.
    head_labels: {head: our label names in output order} for the labelled heads (not QA).
    checkpoint_labels: {head: the checkpoint's label names in row order} where it has them
      (`head_labels.checkpoint_labels`). A fitting labelled head is kept only when both
      name sets are equal, with its output rows permuted to our order; different sets
      raise ValueError naming both lists. Without checkpoint names it is kept only with
      `keep_unnamed` (init_heads="fitting_unnamed"), and the notes say so.
    reinit: regexes of encoder subtrees to leave freshly initialised although the checkpoint
      has them, e.g. "^encoder/pooler/" or "layer_11/" (re-initialising the top layer helps
      small-data fine-tuning, Zhang et al. 2021).

  Returns:
    (params, report): params have the task tree's structure and dtypes.

  Raises:
    ValueError: a copied leaf has another shape than the task's (the message names the path
      and both shapes, and for the embedding tables says which surgery fixes it), or the
      checkpoint has no encoder at all.
  """
  pretrained_params = _with_encoder_scope(pretrained_params)
  if not any(p.startswith("encoder/") for p in flatten(pretrained_params)):
    raise ValueError("pretrained params contain no 'encoder/...' leaves; top-level keys: "
                     f"{sorted(dict(pretrained_params))}")
  task_paths = flatten(task_params)
  for pattern in reinit:
    if not any(re.search(pattern, p) for p in task_paths):
      raise ValueError(f"reinit pattern {pattern!r} matches no task parameter path")
  keep = tuple(keep)
  fitting, notes = _fitting_heads(task_params, pretrained_params, tuple(keep_fitting))
  pretrained_params, fitting, label_notes = _label_safe(
      pretrained_params, fitting, head_labels or {}, checkpoint_labels or {}, keep_unnamed)
  notes = [n for n in notes if not any(n.startswith(f"checkpoint head {h!r} kept:")
                                       for h in set(keep_fitting) - fitting)] + label_notes
  params, merged = merge_params(
      task_params, pretrained_params,
      take=lambda path: (path.startswith("encoder/") or matches_any(path, keep)
                         or path.split("/", 1)[0] in fitting),
      reinit=reinit, mismatch_message=_mismatch_message,
      cast=lambda value, like: jax.numpy.asarray(value, dtype=like.dtype))
  # Checkpoint leaves of task heads (not encoder, not the pre-training heads) that were not
  # taken are "unused": the user should see that a fine-tuned head was left behind.
  unused = {p: list(_shape(v)) for p, v in flatten(pretrained_params).items()
            if p.split("/", 1)[0] not in ("encoder",) + _PRETRAINING_HEADS
            and p not in merged.loaded}
  dropped = {p: s for p, s in merged.dropped.items() if p not in unused}
  report = SurgeryReport(loaded=merged.loaded, new=merged.new, dropped=dropped,
                         reinitialized=merged.reinitialized, unused=unused, notes=notes)
  return params, report


def _fitting_heads(task_params: Any, pretrained_params: Any,
                   heads: tuple[str, ...]) -> tuple[set[str], list[str]]:
  """The heads in `heads` that the checkpoint has with exactly the task's leaves and shapes."""
  fitting, notes = set(), []
  for head in heads:
    if head in ("encoder",) + _PRETRAINING_HEADS:
      raise ValueError(f"keep_fitting takes task heads, not {head!r}")
  others = set(dict(pretrained_params)) - {"encoder", *_PRETRAINING_HEADS, *heads}
  for head in sorted(others):
    notes.append(f"checkpoint head {head!r} unused: "
                 + ("this task model has no such head" if head not in dict(task_params)
                    else "not asked for (keep_fitting / init_heads)"))
  for head in heads:
    ours = flatten(dict(task_params).get(head, {}))
    theirs = flatten(dict(pretrained_params).get(head, {}))
    if not theirs:
      continue
    if not ours:
      notes.append(f"checkpoint head {head!r} unused: this task model has no such head")
      continue
    want = {p: _shape(v) for p, v in ours.items()}
    got = {p: _shape(v) for p, v in theirs.items()}
    if want == got:
      fitting.add(head)
      notes.append(f"checkpoint head {head!r} kept: {sorted(got.items())}")
    else:
      notes.append(f"checkpoint head {head!r} unused: checkpoint {sorted(got.items())} vs task "
                   f"model {sorted(want.items())} (other labels or pooling); it starts fresh")
  return fitting, notes


def _label_safe(pretrained: dict[str, Any], fitting: set[str],
                head_labels: Mapping[str, Sequence[str]],
                checkpoint_labels: Mapping[str, Sequence[str]],
                keep_unnamed: bool) -> tuple[dict[str, Any], set[str], list[str]]:
  """Checks label names of the fitting labelled heads; permutes rows to our order."""
  pretrained, kept, notes = dict(pretrained), set(fitting), []
  for head in sorted(fitting & set(head_labels)):
    ours = list(head_labels[head])
    theirs = checkpoint_labels.get(head)
    if theirs is None:
      if keep_unnamed:
        notes.append(f"checkpoint head {head!r} kept WITHOUT label names "
                     f"(init_heads=fitting_unnamed): its rows are taken as {ours}")
      else:
        kept.discard(head)
        notes.append(f"checkpoint head {head!r} unused: the checkpoint has no label names "
                     "to check its row order against; init_heads=fitting_unnamed keeps it")
      continue
    theirs = list(theirs)
    if sorted(theirs) != sorted(ours) or len(set(theirs)) != len(theirs):
      raise ValueError(f"checkpoint head {head!r} has labels {theirs}, the task has {ours}: "
                       "different label sets (use init_heads=fresh to start the head anew)")
    if theirs != ours:
      order = [theirs.index(label) for label in ours]
      arrays = dict(pretrained[head])
      arrays["kernel"] = np.asarray(arrays["kernel"])[..., order]
      arrays["bias"] = np.asarray(arrays["bias"])[order]
      pretrained[head] = arrays
      notes.append(f"checkpoint head {head!r} rows permuted from the checkpoint's label "
                   f"order {theirs} to ours {ours}")
  return pretrained, kept, notes


def extend_position_embeddings(config: BertConfig, params: Any,
                               new_max: int) -> tuple[BertConfig, dict[str, Any]]:
  """Grows the learned position table from config.max_position_embeddings to `new_max`.

  The new rows repeat the old table (row i <- row i mod P), as Longformer's copy
  initialisation: positions P..2P-1 start out behaving like 0..P-1, which keeps the local
  structure attention learned (relative offsets inside each block look familiar) and works
  far better than random rows. Rows 0..P-1 are unchanged, so outputs for inputs shorter than
  P do not change.
  """
  old = config.max_position_embeddings
  if new_max < old:
    raise ValueError(f"new_max={new_max} is smaller than max_position_embeddings={old}")
  flat = flatten(_with_encoder_scope(params))
  table = np.asarray(flat[POSITION_EMBEDDINGS])
  if table.shape[0] != old:
    raise ValueError(f"{POSITION_EMBEDDINGS} has {table.shape[0]} rows but the config says "
                     f"max_position_embeddings={old}")
  reps = -(-new_max // old)
  flat[POSITION_EMBEDDINGS] = np.tile(table, (reps, 1))[:new_max].astype(table.dtype)
  return config.replace(max_position_embeddings=new_max), _restore_scope(params, flat)


def _restore_scope(original: Any, flat: dict[str, Any]) -> dict[str, Any]:
  tree = unflatten(flat)
  if "encoder" not in dict(original) and "embeddings" in dict(original):
    return tree["encoder"]
  return tree


def extend_vocab(config: BertConfig, params: Any, num_new: int, *, init: str = "mean",
                 source_ids: Sequence[int | Sequence[int]] | None = None,
                 noise_std: float | None = None,
                 rng: np.random.Generator | int = 0) -> tuple[BertConfig, dict[str, Any]]:
  """Adds `num_new` rows to the word embeddings (and the MLM output_bias when present).

  New tokens get ids config.vocab_size .. config.vocab_size + num_new - 1 (the tokenizer's
  `extra_tokens` order). Old rows are untouched, so outputs for old ids do not change.

  Args:
    init: "mean": mean of all existing rows plus Gaussian noise (std `noise_std`, default
      config.initializer_range / 10), which keeps the new rows inside the distribution the
      encoder has seen (random N(0, 0.02) rows have a much smaller norm than trained ones).
      "copy": row k is the mean of the rows `source_ids[k]` (an id or a list of ids, e.g. the
      pieces of "gene" for @GENE$), no noise unless noise_std is given.
    rng: numpy Generator or seed for the noise.
  """
  if num_new < 0:
    raise ValueError(f"num_new must be >= 0, got {num_new}")
  if init not in ("mean", "copy"):
    raise ValueError(f"init must be 'mean' or 'copy', got {init!r}")
  if init == "copy" and (source_ids is None or len(source_ids) != num_new):
    raise ValueError(f"init='copy' needs one source id (or id list) per new token: "
                     f"num_new={num_new}, source_ids={source_ids!r}")
  flat = flatten(_with_encoder_scope(params))
  table = np.asarray(flat[WORD_EMBEDDINGS])
  if table.shape[0] != config.vocab_size:
    raise ValueError(f"{WORD_EMBEDDINGS} has {table.shape[0]} rows but the config says "
                     f"vocab_size={config.vocab_size}")
  if num_new == 0:
    return config, _restore_scope(params, flat)
  gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
  std = (config.initializer_range / 10 if init == "mean" else 0.0) if noise_std is None \
      else noise_std
  bias = np.asarray(flat[MLM_OUTPUT_BIAS]) if MLM_OUTPUT_BIAS in flat else None
  if init == "mean":
    rows = np.repeat(table.mean(axis=0, keepdims=True), num_new, axis=0)
    new_bias = np.full((num_new,), bias.mean() if bias is not None else 0.0)
  else:
    groups = [np.atleast_1d(np.asarray(s, np.int64)) for s in source_ids]
    for k, g in enumerate(groups):
      if g.size == 0 or g.min() < 0 or g.max() >= table.shape[0]:
        raise ValueError(f"source_ids[{k}]={g.tolist()} must be non-empty ids in "
                         f"[0, {table.shape[0]})")
    rows = np.stack([table[g].mean(axis=0) for g in groups])
    new_bias = np.array([bias[g].mean() for g in groups]) if bias is not None else None
  if std > 0:
    rows = rows + gen.normal(0.0, std, rows.shape)
  flat[WORD_EMBEDDINGS] = np.concatenate([table, rows.astype(table.dtype)])
  if bias is not None:
    flat[MLM_OUTPUT_BIAS] = np.concatenate([bias, new_bias.astype(bias.dtype)])
  return config.replace(vocab_size=config.vocab_size + num_new), _restore_scope(params, flat)


def trainable_patterns_top_k(config: BertConfig, k: int,
                             heads: bool = True) -> tuple[str, ...]:
  """Regexes for `make_optimizer(trainable=...)`: the top k encoder layers (+ head).

  k = 0 trains the task head only (a linear probe). With k >= 1 the pooler trains too, since
  it sits on top of the last layer. `heads` adds every non-encoder subtree (the task head).
  Paths assume unstacked layers (`encoder/encoder/layer_{i}/`), i.e. scan_layers=False.
  """
  n = config.num_hidden_layers
  if not 0 <= k <= n:
    raise ValueError(f"k must be in [0, {n}] (num_hidden_layers), got {k}")
  patterns = [rf"^encoder/encoder/layer_{i}/" for i in range(n - k, n)]
  if k >= 1:
    patterns.append(r"^encoder/pooler/")
  if heads:
    patterns.append(r"^(?!encoder/)")
  if not patterns:
    raise ValueError("k=0 with heads=False leaves nothing trainable")
  return tuple(patterns)
