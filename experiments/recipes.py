"""Small, composable recipes shared by the main job and the ablation notebooks.

Each recipe is one call into the library's public entry points (the pre-training launcher's
`train`, the fine-tuning loop's `run`, the native checkpoint writer), with the knobs a
budget-bound ablation turns. Nothing here re-implements training: a notebook that uses
these stays short and never copies a training loop.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any, Mapping

import jax
import ml_collections

from biobert_jax import models
from biobert_jax.checkpoints import native
from biobert_jax.trainers import finetune as finetune_lib
from biobert_jax.trainers import pretrain as pretrain_lib
from data_pipeline import paths
from experiments.configs import finetune as finetune_configs
from experiments.configs import pretrain as pretrain_configs


def cased_vocab() -> str:
  """BERT-base cased vocabulary: BioBERT v1.x uses exactly this one."""
  return str(paths.data_path("vocab", "bert-base-cased-vocab.txt"))


def pubmed_text() -> str:
  return str(paths.data_path("pretrain", "pubmed_abstracts.txt"))


def ner_corpus(name: str = "NCBI-disease") -> str:
  return str(paths.data_path("ner", name))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
  path = pathlib.Path(path)
  if not path.exists():
    return []
  with path.open(encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _apply(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  """Dotted-key overrides (`"mesh.fsdp": -1`), failing loudly on an unknown key."""
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise KeyError(f"unknown config key {dotted!r}")
    node[leaf] = value


def pretrain_config(preset: str = "mini", **overrides: Any) -> ml_collections.ConfigDict:
  config = pretrain_configs.get_config(preset)
  _apply(config, overrides)
  return config


def pretrain(workdir: str | os.PathLike, preset: str = "mini",
             **overrides: Any) -> dict[str, Any]:
  """Pre-trains (or resumes) in `workdir`; returns the export dir and the metric rows."""
  workdir = str(workdir)
  config = pretrain_config(preset, **overrides)
  pretrain_lib.train(config, workdir)
  return {"export": os.path.join(workdir, "export"),
          "metrics": read_jsonl(os.path.join(workdir, "metrics.jsonl")),
          "eval": read_jsonl(os.path.join(workdir, "eval_metrics.jsonl"))}


def random_init_checkpoint(out_dir: str | os.PathLike, preset: str = "mini", *,
                           vocab_path: str | None = None, seed: int = 0,
                           max_seq_length: int = 128) -> str:
  """A never-trained BertForPreTraining, saved like a pre-training export.

  This is "0 pre-training steps": the baseline goes through exactly the same fine-tuning
  code path (checkpoint load, graft, vocab) as a pre-trained encoder, so the only
  difference between the two arms of the ablation is the pre-training itself.
  """
  vocab_path = vocab_path or cased_vocab()
  config = pretrain_config(preset, vocab_path=vocab_path, max_seq_length=max_seq_length)
  bert_config = pretrain_lib.model_config(config, pretrain_lib.vocab_size_of(vocab_path))
  module = models.BertForPreTraining(bert_config)
  params = jax.device_get(models.init_params(module, jax.random.PRNGKey(seed)))
  out = native.save_native(bert_config, params, out_dir)
  shutil.copyfile(vocab_path, out / "vocab.txt")
  return str(out)


def finetune_config(task: str = "ner", **overrides: Any) -> ml_collections.ConfigDict:
  config = finetune_configs.get_config(task)
  _apply(config, overrides)
  return config


def finetune(workdir: str | os.PathLike, init_checkpoint: str, task: str = "ner",
             **overrides: Any) -> dict[str, Any]:
  """Fine-tunes `init_checkpoint` on a task; returns the eval_results.json content."""
  config = finetune_config(task, init_checkpoint=init_checkpoint, **overrides)
  return finetune_lib.run(config, str(workdir))


def biobert_recipe(workdir: str | os.PathLike, settings: Mapping[str, Any],
                   **kwargs: Any) -> dict[str, Any]:
  """The main job (biobert_jax.trainers.recipe.run) wired to these recipes' trainers."""
  from biobert_jax.trainers import recipe  # pylint: disable=import-outside-toplevel
  kwargs.setdefault("pubmed_files", pubmed_text())
  return recipe.run(str(workdir), settings, pretrain=pretrain, finetune=finetune,
                    random_init=random_init_checkpoint, ner_corpus=ner_corpus, **kwargs)
