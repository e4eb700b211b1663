"""Evaluation of a split in two parts, predict + decode, then score + write, so the best
epoch's dev decoding can be scored again without predicting again.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable

import ml_collections
import numpy as np

from biobert_jax import fs
from biobert_jax.tasks import SplitData, Task
from biobert_jax.trainers.finetune_batches import predict_split, predict_splits


def decode_split(task: Task, predict_step: Callable, params: Any,
                 split: SplitData | list[SplitData], config: ml_collections.ConfigDict) -> Any:
  """The task's decoding of `params`' outputs on a split (a list for a list of splits)."""
  if isinstance(split, (list, tuple)):  # predicted in one pass, decoded one by one
    outputs = predict_splits(predict_step, params, list(split), int(config.eval_batch_size),
                             int(config.bucket_length))
    return [task.decode(o, s, config) for o, s in zip(outputs, split)]
  outputs = predict_split(predict_step, params, split, int(config.eval_batch_size),
                          int(config.bucket_length))
  return task.decode(outputs, split, config)


def score_split(task: Task, decoded: Any, split: SplitData | list[SplitData],
                config: ml_collections.ConfigDict, out_prefix: str | None = None) -> dict:
  """task.evaluate of a decoding (each batch of a list, plus their average); with
  `out_prefix` the same decoding is written as predictions."""
  if isinstance(split, (list, tuple)):
    results = [score_split(task, d, s, config,
                           f"{out_prefix}_batch{i + 1}" if out_prefix else None)
               for i, (d, s) in enumerate(zip(decoded, split))]
    keys = [k for k, v in results[0].items() if isinstance(v, (int, float))]
    average = {k: float(np.mean([r[k] for r in results])) for k in keys}
    return {"batches": results, "average": average,
            task.primary_metric: average.get(task.primary_metric, 0.0)}
  result = task.evaluate(decoded, split, config)
  if out_prefix and config.write_predictions:
    result["prediction_files"] = [fs.basename(p) for p in
                                  task.write_predictions(decoded, split, out_prefix)]
  return result


def evaluate_split(task: Task, predict_step: Callable, params: Any,
                   split: SplitData | list[SplitData], config: ml_collections.ConfigDict,
                   out_prefix: str | None = None) -> dict:
  """Decodes once, scores, and (with `out_prefix`) writes that decoding as predictions."""
  return score_split(task, decode_split(task, predict_step, params, split, config), split,
                     config, out_prefix)
