"""Pre-training presets (tiny, mini, small, medium, base, large): BERT/BioBERT's defaults
scaled to the preset, and their rules (`validate`). Users pass
`--config=experiments/configs/pretrain.py:<preset>`, which returns `get_config` from here.
"""
from __future__ import annotations

import json
from typing import Any

import jax
import ml_collections

from biobert_jax import fs
from biobert_jax.config import BertConfig
from biobert_jax.configs import checks, optim
from biobert_jax.configs.overrides import apply_overrides
from biobert_jax.models import DTYPES
from data_pipeline import paths  # the default corpus and vocabulary under BIOBERT_DATA_DIR

DATA_SOURCES = ("corpus", "synthetic")
CORPUS_FILE_FORMATS = ("text_doc_per_line", "text_bert", "pubmed_xml", "pmc", "tfrecord")
ON_ERROR = ("raise", "skip")

# Per-preset defaults that differ from the common ones below.
_PRESET_OVERRIDES = {
    "tiny": {"batch_size": 32, "optim.learning_rate": 1e-3, "optim.warmup_steps": 50,
             "total_steps": 1000},
    "mini": {"batch_size": 64, "optim.learning_rate": 5e-4, "optim.warmup_steps": 500},
    "small": {"batch_size": 128, "optim.learning_rate": 3e-4},
    "medium": {"batch_size": 256, "optim.learning_rate": 2e-4},
    "base": {"batch_size": 256, "optim.learning_rate": 1e-4, "dtype": "bfloat16"},
    "large": {"batch_size": 256, "optim.learning_rate": 1e-4, "dtype": "bfloat16",
              "remat": True},
}


def get_config(preset: str = "tiny") -> ml_collections.ConfigDict:
  """The preset's config (ml_collections' config_flags calls this with the text after ':')."""
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

  # Optimisation. total_steps is the loop's length (the schedule decays over it).
  c.seed = 0
  c.total_steps = 100000
  c.optim = optim.optim_config(learning_rate=1e-4, warmup_steps=10000)
  c.grad_accum_steps = 1
  # Regexes; empty = everything. Top level, not in optim: the train step reads it too
  # (it stops the frozen leaves' gradients).
  c.trainable = ()
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
  return apply_overrides(c, _PRESET_OVERRIDES[preset])


def _checkpoint_positions(path: str) -> int | None:
  """max_position_embeddings from the JSON config of a checkpoint, when one is found."""
  p = fs.path(path)
  folder = p if p.is_dir() else p.parent
  for name in ("bert_config.json", "config.json"):
    candidate = folder / name
    if candidate.is_file():
      try:
        with fs.open(candidate, encoding="utf-8") as f:
          value = json.load(f).get("max_position_embeddings")
      except (OSError, ValueError, AttributeError):
        return None  # the loader reports a broken config with its own message
      return int(value) if isinstance(value, int) else None
  return None


def _data(config: Any) -> None:
  """The corpus pipeline's keys (not read by synthetic data)."""
  checks.choice(config, "data.file_format", CORPUS_FILE_FORMATS)
  checks.choice(config, "data.on_error", ON_ERROR)
  checks.check_range(config, "data.masked_lm_prob", low=0, high=1, low_open=True,
                     high_open=True)
  checks.check_range(config, "data.short_seq_prob", low=0, high=1)
  checks.non_negative_int(config, "data.holdout_every", "data.num_threads")
  checks.positive_int(config, "data.shuffle_buffer", "data.doc_pool_size", "data.block_docs",
                      "data.cycle_length", "data.dupe_factor", "data.num_workers")
  has_files, files = checks.lookup(config, "train_files")
  if has_files:
    patterns = files.split(",") if isinstance(files, str) else list(files)
    if not [p for p in patterns if str(p).strip()]:
      checks.fail("train_files", files, "is empty: give a glob or comma-separated globs")
    for pattern in patterns:
      if str(pattern).strip() and not fs.glob(str(pattern).strip()):
        checks.fail("train_files", files, f"no file matches {str(pattern).strip()!r}")


def validate(config: Any, *, device_count: int | None = None,
             process_count: int | None = None) -> None:
  """Checks a pre-training config before any work (keys absent from it are skipped).

  Raises:
    checks.ConfigError: naming the first bad key, its value and what is allowed.
  """
  checks.choice(config, "model", BertConfig.preset_names())
  checks.non_negative_int(config, "hidden_size", "num_layers", "num_heads",
                          "intermediate_size")
  checks.choice(config, "dtype", sorted(DTYPES))
  checks.choice(config, "data_source", DATA_SOURCES)
  checks.positive_int(config, "batch_size", "total_steps", "max_predictions_per_seq",
                      "grad_accum_steps", "log_every", "checkpoint_every", "keep_checkpoints")
  checks.non_negative_int(config, "keep_every", "eval_every", "eval_steps")
  checks.check_range(config, "max_seq_length", integer=True, low=5,
                     note=" ([CLS] A [SEP] B [SEP] needs at least 5 positions)")
  _, seq = checks.lookup(config, "max_seq_length")
  has_pred, predictions = checks.lookup(config, "max_predictions_per_seq")
  if has_pred and seq is not None and predictions > seq:
    checks.fail("max_predictions_per_seq", predictions, f"must be <= max_seq_length ({seq})")
  checks.check_range(config, "nsp_weight", low=0)
  optim.validate(config)
  optim.validate_trainable(config)
  checks.existing_path(config, "vocab_path", "vocabulary file")
  checks.existing_path(config, "init_checkpoint", "checkpoint")
  has_init, init = checks.lookup(config, "init_checkpoint")
  if has_init and init and seq is not None:
    positions = _checkpoint_positions(str(init))
    if positions is not None and seq > positions:
      checks.fail("max_seq_length", seq, f"must be <= the {positions} position embeddings "
                  f"of init_checkpoint {init} (pre-training does not extend them; "
                  "fine-tuning does)")
  if checks.lookup(config, "data_source")[1] != "synthetic":
    _data(config)
  shape = checks.mesh(config, device_count)
  has_batch, batch = checks.lookup(config, "batch_size")
  if has_batch:
    if process_count is None:
      process_count = jax.process_count()
    if batch % process_count:
      checks.fail("batch_size", batch, f"the global batch must divide over the "
                  f"{process_count} processes")
    if shape is not None:
      accum = int(checks.lookup(config, "grad_accum_steps")[1] or 1)
      shards = shape[0] * shape[1] * accum
      if batch % shards:
        checks.fail("batch_size", batch, f"must be a multiple of data x fsdp x "
                    f"grad_accum_steps = {shape[0]} x {shape[1]} x {accum} = {shards}")
