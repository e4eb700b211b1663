"""Config checks that run before any work (one line naming the key, the value, the rule),
and the handling of empty or missing dev/test splits.
"""
from __future__ import annotations

import json
import math
from typing import Any
from collections.abc import Iterable, Mapping

import jax
from absl import logging

from biobert_jax import fs, sharding
from biobert_jax.config import BertConfig
from biobert_jax.models import DTYPES

OPTIMIZERS = ("adamw", "lamb")
DATA_SOURCES = ("corpus", "synthetic")
CORPUS_FILE_FORMATS = ("text_doc_per_line", "text_bert", "pubmed_xml", "pmc", "tfrecord")
ON_ERROR = ("raise", "skip")
TASKS = ("ner", "re", "qa", "multi_ner")
NER_SCHEMES = ("iob2", "iob1", "iobes")
INVALID_I = ("repair", "fail")
RE_DATASETS = ("auto", "gad", "chemprot", "biobert_tsv")
RE_POOLING = ("cls", "entity_start")
RE_MULTI_LABEL = ("both", "first")
QA_MERGE = ("sum", "max")
INIT_HEADS = ("fitting", "fitting_unnamed", "fresh")
MESH_AXES = ("data", "fsdp", "tensor")


class ConfigError(ValueError):
  """A config value outside what the trainer accepts; names key, value and the rule."""


def _fail(key: str, value: Any, allowed: str) -> None:
  raise ConfigError(f"config.{key}={value!r}: {allowed}")


def _lookup(config: Any, key: str) -> tuple[bool, Any]:
  """(present, value) of a dotted key; a flat key is also looked up under `optim`."""
  node = config
  for part in key.split("."):
    if isinstance(node, Mapping) or hasattr(node, "keys"):
      if part not in node:
        break
      node = node[part]
    else:
      break
  else:
    return True, node
  if "." not in key and "optim" in config and key in config["optim"]:
    return True, config["optim"][key]
  return False, None


def _named(config: Any, key: str) -> str:
  """The key as the user spells it: `optim.<key>` when it was found in the sub-config."""
  if "." not in key and key not in config and "optim" in config and key in config["optim"]:
    return f"optim.{key}"
  return key


def _number(key: str, value: Any, integer: bool) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    _fail(key, value, f"must be {'an integer' if integer else 'a number'}")
  if integer and float(value) != int(value):
    _fail(key, value, "must be an integer")
  if not math.isfinite(value):
    _fail(key, value, "must be finite")
  return value


def _check_range(config: Any, key: str, *, integer: bool = False, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 high_open: bool = False, note: str = "") -> None:
  present, value = _lookup(config, key)
  if not present:
    return
  key = _named(config, key)
  value = _number(key, value, integer)
  too_low = low is not None and (value <= low if low_open else value < low)
  too_high = high is not None and (value >= high if high_open else value > high)
  if too_low or too_high:
    lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
    rule = " and ".join(r for r in (lo, hi) if r)
    _fail(key, value, f"must be {'an integer ' if integer else ''}{rule}{note}")


def _positive_int(config: Any, *keys: str) -> None:
  for key in keys:
    _check_range(config, key, integer=True, low=1)


def _non_negative_int(config: Any, *keys: str) -> None:
  for key in keys:
    _check_range(config, key, integer=True, low=0)


def _choice(config: Any, key: str, choices: Iterable[Any]) -> None:
  present, value = _lookup(config, key)
  choices = tuple(choices)
  if present and value not in choices:
    _fail(_named(config, key), value, f"must be one of {', '.join(repr(c) for c in choices)}")


def _existing_path(config: Any, key: str, what: str) -> None:
  present, value = _lookup(config, key)
  if present and value and not fs.exists(str(value)):
    _fail(key, value, f"no such {what}")


def _optimizer(config: Any) -> None:
  _choice(config, "optimizer", OPTIMIZERS)
  # 0 is allowed: a run that must not move the weights (tests continue an export so).
  _check_range(config, "learning_rate", low=0)
  _check_range(config, "weight_decay", low=0)
  _check_range(config, "b1", low=0, high=1, high_open=True)
  _check_range(config, "b2", low=0, high=1, high_open=True)
  _check_range(config, "eps", low=0, low_open=True)
  _check_range(config, "clip_norm", low=0, note=" (0 = no clipping)")
  _non_negative_int(config, "warmup_steps")
  _check_range(config, "warmup_proportion", low=0, high=1)
  present, trainable = _lookup(config, "trainable")
  if present and isinstance(trainable, str):
    _fail("trainable", trainable, "must be a tuple of regexes, e.g. ('encoder/layer_11',)")


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


def _mesh(config: Any, device_count: int | None) -> tuple[int, int, int] | None:
  """The resolved (data, fsdp, tensor) shape, or None when the config has no mesh."""
  if not _lookup(config, "mesh")[0]:
    return None
  _choice(config, "mesh.auto", (True, False))
  if _lookup(config, "mesh.auto")[1]:  # the axes are searched for (trainers/auto_mesh.py)
    return None
  sizes = {}
  for axis in MESH_AXES:
    has, value = _lookup(config, f"mesh.{axis}")
    value = value if has else (-1 if axis == "fsdp" else 1)
    if isinstance(value, bool) or not isinstance(value, int):
      _fail(f"mesh.{axis}", value, "must be a positive integer or -1 (the rest)")
    sizes[axis] = value
  if device_count is None:
    device_count = jax.device_count()
  try:
    return sharding.resolve_mesh_shape(sizes["data"], sizes["fsdp"], sizes["tensor"],
                                       device_count)
  except ValueError as e:
    raise ConfigError(f"config.mesh: {e}") from None


def validate_pretrain_config(config: Any, *, device_count: int | None = None,
                             process_count: int | None = None) -> None:
  """Checks a pre-training config (experiments/configs/pretrain.py) before any work.

  Raises:
    ConfigError: naming the first bad key, its value and what is allowed.
  """
  _choice(config, "model", BertConfig.preset_names())
  _non_negative_int(config, "hidden_size", "num_layers", "num_heads", "intermediate_size")
  _choice(config, "dtype", sorted(DTYPES))
  _choice(config, "data_source", DATA_SOURCES)
  _positive_int(config, "batch_size", "total_steps", "max_predictions_per_seq",
                "grad_accum_steps", "log_every", "checkpoint_every", "keep_checkpoints")
  _non_negative_int(config, "keep_every", "eval_every", "eval_steps")
  _check_range(config, "max_seq_length", integer=True, low=5,
               note=" ([CLS] A [SEP] B [SEP] needs at least 5 positions)")
  _, seq = _lookup(config, "max_seq_length")
  has_pred, predictions = _lookup(config, "max_predictions_per_seq")
  if has_pred and seq is not None and predictions > seq:
    _fail("max_predictions_per_seq", predictions,
          f"must be <= max_seq_length ({seq})")
  _check_range(config, "nsp_weight", low=0)
  _optimizer(config)
  _existing_path(config, "vocab_path", "vocabulary file")
  _existing_path(config, "init_checkpoint", "checkpoint")
  has_init, init = _lookup(config, "init_checkpoint")
  if has_init and init and seq is not None:
    positions = _checkpoint_positions(str(init))
    if positions is not None and seq > positions:
      _fail("max_seq_length", seq, f"must be <= the {positions} position embeddings of "
            f"init_checkpoint {init} (pre-training does not extend them; fine-tuning does)")
  _, source = _lookup(config, "data_source")
  if source != "synthetic":
    _choice(config, "data.file_format", CORPUS_FILE_FORMATS)
    _choice(config, "data.on_error", ON_ERROR)
    _check_range(config, "data.masked_lm_prob", low=0, high=1, low_open=True,
                 high_open=True)
    _check_range(config, "data.short_seq_prob", low=0, high=1)
    _non_negative_int(config, "data.holdout_every", "data.num_threads")
    _positive_int(config, "data.shuffle_buffer", "data.doc_pool_size", "data.block_docs",
                  "data.cycle_length", "data.dupe_factor", "data.num_workers")
    has_files, files = _lookup(config, "train_files")
    if has_files:
      patterns = files.split(",") if isinstance(files, str) else list(files)
      if not [p for p in patterns if str(p).strip()]:
        _fail("train_files", files, "is empty: give a glob or comma-separated globs")
      for pattern in patterns:
        if str(pattern).strip() and not fs.glob(str(pattern).strip()):
          _fail("train_files", files, f"no file matches {str(pattern).strip()!r}")
  shape = _mesh(config, device_count)
  has_batch, batch = _lookup(config, "batch_size")
  if has_batch:
    if process_count is None:
      process_count = jax.process_count()
    if batch % process_count:
      _fail("batch_size", batch, f"the global batch must divide over the {process_count} "
            "processes")
    if shape is not None:
      _, accum = _lookup(config, "grad_accum_steps")
      shards = shape[0] * shape[1] * int(accum or 1)
      if batch % shards:
        _fail("batch_size", batch, f"must be a multiple of data x fsdp x grad_accum_steps "
              f"= {shape[0]} x {shape[1]} x {int(accum or 1)} = {shards}")


def validate_finetune_config(config: Any, *, device_count: int | None = None) -> None:
  """Checks a fine-tuning config (experiments/configs/finetune.py) before any work.

  Positions beyond the checkpoint's are not an error: fine-tuning extends the position
  table by surgery. Raises ConfigError naming the first bad key.
  """
  _choice(config, "task", TASKS)
  _choice(config, "dtype", sorted(DTYPES))
  _choice(config, "model_preset", BertConfig.preset_names())
  _positive_int(config, "num_epochs", "batch_size", "eval_batch_size", "log_every",
                "doc_stride")
  _non_negative_int(config, "bucket_length", "group_by_length", "max_train_examples",
                    "max_eval_examples", "compile_threads")
  _choice(config, "compile_ahead", (True, False))
  _check_range(config, "max_seq_length", integer=True, low=3,
               note=" ([CLS] text [SEP] needs at least 3 positions)")
  _check_range(config, "trainable_top_k", integer=True, low=-1, note=" (-1 = off)")
  _check_range(config, "dropout_rate", high=1, high_open=True, note=" (< 0 = keep the "
               "checkpoint's)")
  _choice(config, "lowercase", (-1, 0, 1, True, False))
  _choice(config, "init_heads", INIT_HEADS)
  _optimizer(config)
  _existing_path(config, "init_checkpoint", "checkpoint")
  _existing_path(config, "vocab_path", "vocabulary file")
  _existing_path(config, "data_dir", "data directory")
  _positive_int(config, "checkpoint_every", "keep_checkpoints")
  _mesh(config, device_count)
  _choice(config, "ner.scheme", NER_SCHEMES)
  _choice(config, "ner.invalid_i", INVALID_I)
  _choice(config, "re.dataset", RE_DATASETS)
  _choice(config, "re.pooling", RE_POOLING)
  _choice(config, "re.multi_label", RE_MULTI_LABEL)
  _check_range(config, "re.dev_fraction", low=0, high=1, high_open=True)
  _choice(config, "qa.merge", QA_MERGE)
  _positive_int(config, "qa.max_query_length", "qa.n_best_size", "qa.max_answer_length",
                "qa.top_k")
  _, task = _lookup(config, "task")
  _, seq = _lookup(config, "max_seq_length")
  has_query, query = _lookup(config, "qa.max_query_length")
  if task == "qa" and has_query and seq is not None and seq < query + 4:
    _fail("max_seq_length", seq, f"must leave room for context after the question: at "
          f"least qa.max_query_length + 4 = {query + 4}")
  has_tests, tests = _lookup(config, "qa.test_files")
  has_golden, golden = _lookup(config, "qa.golden_files")
  if task == "qa" and has_tests and has_golden and golden and len(golden) != len(tests):
    _fail("qa.golden_files", golden, f"needs one golden file per test file "
          f"({len(tests)} test files)")


def _size(split: Any) -> int:
  if isinstance(split, (list, tuple)):
    return sum(_size(s) for s in split)
  return int(getattr(split, "num_features", 0) or 0)


def check_splits(splits: dict[str, Any], config: Any) -> dict[str, Any]:
  """Drops empty dev/test splits from `splits` (in place) before training; says so.

  An empty or missing dev split means no per-epoch selection (the last epoch's params
  are the result), stated in the log here and in eval_results.json (`split_notes`). It is
  an error when the user asked for a dev split explicitly (re.dev_fraction > 0 or
  qa.dev_file) and it came out empty. Returns `split_notes(splits)`.

  Raises:
    ConfigError: an empty train split, or an explicitly requested dev split that is empty.
  """
  if _size(splits.get("train", [])) == 0:
    raise ConfigError("the train split has no examples: check config.data_dir and "
                      f"config.max_train_examples (= {_lookup(config, 'max_train_examples')[1]})")
  had_dev = "dev" in splits
  for name in ("dev", "test"):
    if name in splits and _size(splits[name]) == 0:
      del splits[name]
      logging.warning("the %s split is empty: it is not evaluated", name)
      print(f"note: the {name} split is empty: it is not evaluated", flush=True)
  _, task = _lookup(config, "task")
  has_fraction, fraction = _lookup(config, "re.dev_fraction")
  has_dev_file, dev_file = _lookup(config, "qa.dev_file")
  if "dev" not in splits:
    if task == "re" and has_fraction and fraction and fraction > 0:
      _fail("re.dev_fraction", fraction, "asks for a dev split, but it came out empty "
            "(too few distinct training sentences?)")
    if task == "qa" and has_dev_file and dev_file:
      _fail("qa.dev_file", dev_file, "asks for a dev split, but it has no questions")
    reason = "empty" if had_dev else "missing"
    print(f"note: the dev split is {reason}: no per-epoch model selection, the last "
          "epoch's params are the result", flush=True)
  return split_notes(splits)


def split_notes(splits: Mapping[str, Any]) -> dict[str, str]:
  """What eval_results.json says about model selection and absent splits."""
  notes = {}
  if "dev" not in splits:
    notes["model_selection"] = ("none: no dev split (missing or empty), the last "
                                "epoch's params are the result")
  if "test" not in splits:
    notes["test_split"] = "none: no test split (missing or empty), not evaluated"
  return notes
