"""HF (transformers) BERT checkpoints: read config.json + model.safetensors / pytorch_model.bin,
write config.json + model.safetensors loadable by transformers' BertModel/BertForPreTraining.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
from typing import Any
from collections.abc import Mapping

import jax
import numpy as np

from biobert_jax import fs
from biobert_jax.checkpoints import names
from biobert_jax.checkpoints.convert import CheckpointError, LoadReport, assemble, disassemble
from biobert_jax.config import BertConfig

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
CONFIG = "config.json"


def is_hf_dir(path: str | os.PathLike) -> bool:
  p = fs.path(path)  # local: pathlib.Path; gs://: detection only (loads read a copy)
  return p.is_dir() and (p / CONFIG).exists() and any(
      (p / f).exists() for f in (SAFETENSORS, SAFETENSORS_INDEX, TORCH_BIN))


def _read_safetensors(file: pathlib.Path) -> dict[str, np.ndarray]:
  from safetensors import safe_open

  try:
    out, bf16 = {}, []
    with safe_open(str(file), framework="np") as f:
      for key in f.keys():
        if f.get_slice(key).get_dtype() == "BF16":  # numpy has no bfloat16: read via jax
          bf16.append(key)
        else:
          out[key] = f.get_tensor(key)
    if bf16:
      with safe_open(str(file), framework="flax") as f:
        for key in bf16:
          out[key] = np.asarray(f.get_tensor(key))
    return out
  except Exception as e:  # safetensors raises its own SafetensorError / OSError types
    raise CheckpointError(f"{file}: cannot read safetensors file (truncated or corrupt?): "
                          f"{e}") from e


def _read_torch_bin(file: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError as e:
    raise CheckpointError(f"{file}: reading pytorch_model.bin needs torch (not installed); "
                          "convert it to model.safetensors") from e
  try:
    state = torch.load(str(file), map_location="cpu", weights_only=True)
  except Exception as e:
    raise CheckpointError(f"{file}: cannot read torch checkpoint: {e}") from e
  return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in state.items()}


def read_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """All tensors of a HF model directory, by their HF names."""
  p = pathlib.Path(path)
  if (p / SAFETENSORS).exists():
    return _read_safetensors(p / SAFETENSORS)
  if (p / SAFETENSORS_INDEX).exists():
    with open(p / SAFETENSORS_INDEX, encoding="utf-8") as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for shard in shards:
      out.update(_read_safetensors(p / shard))
    return out
  if (p / TORCH_BIN).exists():
    return _read_torch_bin(p / TORCH_BIN)
  raise CheckpointError(f"{p}: no {SAFETENSORS}, {SAFETENSORS_INDEX} or {TORCH_BIN}")


_OLD_LAYER_NORM = re.compile(r"(LayerNorm)\.(gamma|beta)$")


def normalise_names(tensors: Mapping[str, np.ndarray],
                    report: LoadReport) -> dict[str, np.ndarray]:
  """Drops the `bert.` prefix, renames old gamma/beta LayerNorm names, sets aside buffers and
  tied copies (recorded in `report.ignored`)."""
  out = {}
  for name, array in tensors.items():
    if names.HF_IGNORED.search(name):
      report.ignored.append(name)
      continue
    new = name[len(names.HF_PREFIX):] if name.startswith(names.HF_PREFIX) else name
    new = _OLD_LAYER_NORM.sub(lambda m: m.group(1) + (".weight" if m.group(2) == "gamma"
                                                      else ".bias"), new)
    if new in out:
      raise CheckpointError(f"{name}: duplicate tensor (both with and without 'bert.' prefix)")
    out[new] = array
  return out


def _architecture(path: pathlib.Path) -> str:
  with open(path / CONFIG, encoding="utf-8") as f:
    return (json.load(f).get("architectures") or [""])[0]


def load(path: str | os.PathLike, *, strict: bool = True, rng: jax.Array | None = None,
         ) -> tuple[BertConfig, dict[str, Any], LoadReport]:
  """Reads a HF BERT directory -> (config, {"encoder": ..., ["cls": ...]}, report)."""
  p = pathlib.Path(path)
  config = BertConfig.from_json_file(p / CONFIG)
  report = LoadReport(path=str(p), format="hf")
  raw = read_tensors(p)
  tensors = normalise_names(raw, report)
  heads = any(n.startswith(("cls.predictions.", "cls.seq_relationship.")) for n in tensors)
  # transformers builds token classification and QA models without the pooler.
  no_pooler = _architecture(p) in {c.architecture for c in names.HF_TASK_CLASSES
                                   if not c.pooler} and not any(
                                       n.startswith("pooler.") for n in tensors)
  params = assemble(config, tensors, fmt="hf", heads=heads, report=report,
                    strict=strict and not no_pooler, rng=rng)
  if no_pooler:
    surprises = [n for n in report.new if not n.startswith("encoder/pooler/")]
    if strict and (surprises or report.unused):
      raise CheckpointError(f"{p}: checkpoint does not fit the model: missing {surprises}, "
                            f"unexpected {report.unused}")
    report.notes.append(f"{_architecture(p)} has no pooler: encoder/pooler initialised "
                        "freshly (unused by token classification and QA)")
  tied = next((raw[n] for n in raw if n.endswith("cls.predictions.decoder.weight")), None)
  if tied is not None and not np.array_equal(
      tied, params["encoder"]["embeddings"]["word_embeddings"]["embedding"]):
    report.notes.append("cls.predictions.decoder.weight differs from the word embeddings; "
                        "this model ties them, so the word embeddings are used")
  return config, params, report


def export(config: BertConfig, params: Mapping[str, Any], out_dir: str | os.PathLike, *,
           drop_unknown: bool = False) -> pathlib.Path:
  """Writes `params` as a HF directory (config.json + model.safetensors).

  With pre-training heads ("cls") the layout is transformers' BertForPreTraining (`bert.`
  prefix, cls.*; the tied decoder weight/bias are not stored, as transformers itself saves
  them); without, BertModel (no prefix).
  """
  from safetensors.numpy import save_file

  tensors, heads = disassemble(config, params, fmt="hf", drop_unknown=drop_unknown)
  if heads:
    tensors = {(n if n.startswith("cls.") else names.HF_PREFIX + n): a for n, a in tensors.items()}
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  arch = "BertForPreTraining" if heads else "BertModel"
  with open(out / CONFIG, "w", encoding="utf-8") as f:
    json.dump(config.to_hf_dict(architectures=(arch,)), f, indent=2, sort_keys=True)
    f.write("\n")
  save_file(tensors, str(out / SAFETENSORS), metadata={"format": "pt"})
  return out
