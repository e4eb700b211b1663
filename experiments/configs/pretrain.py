"""Pre-training configs: `--config=experiments/configs/pretrain.py:<preset>` (tiny, mini,
small, medium, base, large), BERT/BioBERT's defaults scaled to the preset.
"""
from __future__ import annotations

import ml_collections

from data_pipeline import paths

# Per-preset defaults that differ from the common ones below.
_PRESET_OVERRIDES = {
    "tiny": dict(batch_size=32, learning_rate=1e-3, warmup_steps=50, total_steps=1000),
    "mini": dict(batch_size=64, learning_rate=5e-4, warmup_steps=500),
    "small": dict(batch_size=128, learning_rate=3e-4),
    "medium": dict(batch_size=256, learning_rate=2e-4),
    "base": dict(batch_size=256, learning_rate=1e-4, dtype="bfloat16"),
    "large": dict(batch_size=256, learning_rate=1e-4, dtype="bfloat16", remat=True),
}


def get_config(preset: str = "tiny") -> ml_collections.ConfigDict:
  if preset not in _PRESET_OVERRIDES:
    raise ValueError(f"unknown pretrain preset {preset!r}; valid: {', '.join(_PRESET_OVERRIDES)}")
  c = ml_collections.ConfigDict()

  # Model: a BertConfig preset; 0 = the preset's value. vocab_size comes from the vocab.
  c.model = preset
  c.hidden_size = 0
  c.num_layers = 0
  c.num_heads = 0
  c.intermediate_size = 0
  c.dtype = "float32"  # compute dtype: float32 | bfloat16 (params stay float32)
  c.scan_layers = False
  c.remat = False
  c.init_checkpoint = ""  # any format biobert_jax.checkpoints.load reads ("" = random init)

  # Data (the keys the pipeline shares with the trainer live here; the rest in c.data).
  c.data_source = "corpus"  # "corpus" (data_pipeline.pretraining) | "synthetic" (tests, benchmarks)
  c.train_files = str(paths.data_path("pretrain", "pubmed_abstracts.txt"))
  c.vocab_path = str(paths.data_path("vocab", "bert-base-cased-vocab.txt"))
  c.lowercase = False
  c.max_seq_length = 128
  c.max_predictions_per_seq = 20
  c.batch_size = 256  # GLOBAL batch (split over processes; per device it is / batch shards)
  c.data = ml_collections.ConfigDict()
  c.data.file_format = "text_doc_per_line"
  c.data.eval_files = ""
  c.data.masked_lm_prob = 0.15
  c.data.whole_word_masking = False  # mask every piece of a picked word (BERT's later models)
  c.data.shuffle_buffer = 10000
  c.data.doc_pool_size = 1000
  c.data.holdout_every = 100  # 1 document in 100 is held out for evaluation
  c.data.num_threads = 0
  c.data.num_workers = 1  # > 1: dynamic pipeline in that many processes (Python stages)

  # Optimisation.
  c.seed = 0
  c.total_steps = 100000
  c.optimizer = "adamw"  # adamw | lamb
  c.learning_rate = 1e-4
  c.warmup_steps = 10000
  c.weight_decay = 0.01
  c.b1 = 0.9
  c.b2 = 0.999
  c.eps = 1e-6
  c.clip_norm = 1.0
  c.grad_accum_steps = 1
  c.trainable = ()  # regexes; empty = everything
  # Weight of the NSP loss (1 = BERT; 0 = MLM only, as RoBERTa, which found NSP does not
  # help; the NSP head is still evaluated, so its accuracy stays visible).
  c.nsp_weight = 1.0

  # Devices: -1 = the rest.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = 1
  c.mesh.fsdp = -1
  c.mesh.tensor = 1
  # True (or --config.mesh=auto): the axes above are searched for (docs/planning.md)
  c.mesh.auto = False

  # Bookkeeping.
  c.log_every = 100
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.keep_every = 0  # also keep every step divisible by this (0 = none)
  c.async_checkpoints = True
  c.eval_every = 0  # 0 = only at the end
  c.eval_steps = 20  # batches per evaluation
  c.tensorboard = True
  # True: delete whatever run the workdir holds and start afresh. Otherwise a re-run on
  # the same workdir resumes, and refuses (listing the keys) when the config differs.
  c.overwrite = False

  for key, value in _PRESET_OVERRIDES[preset].items():
    setattr(c, key, value)
  return c
