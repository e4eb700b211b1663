"""The handling of empty or missing dev/test splits, decided before training. The config
rules live beside the fields they check (biobert_jax/configs/).
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

from absl import logging

from biobert_jax.configs.checks import ConfigError, fail, lookup

__all__ = ["ConfigError", "check_splits", "split_notes"]


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
                      f"config.max_train_examples (= {lookup(config, 'max_train_examples')[1]})")
  had_dev = "dev" in splits
  for name in ("dev", "test"):
    if name in splits and _size(splits[name]) == 0:
      del splits[name]
      logging.warning("the %s split is empty: it is not evaluated", name)
      print(f"note: the {name} split is empty: it is not evaluated", flush=True)
  _, task = lookup(config, "task")
  has_fraction, fraction = lookup(config, "re.dev_fraction")
  has_dev_file, dev_file = lookup(config, "qa.dev_file")
  if "dev" not in splits:
    if task == "re" and has_fraction and fraction and fraction > 0:
      fail("re.dev_fraction", fraction, "asks for a dev split, but it came out empty "
            "(too few distinct training sentences?)")
    if task == "qa" and has_dev_file and dev_file:
      fail("qa.dev_file", dev_file, "asks for a dev split, but it has no questions")
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
