"""The task-adapter interface shared by the fine-tuning launcher (NER, RE, QA).

`experiments/finetune.py` is one loop for every task family; everything task specific
lives in an adapter implementing `Task` (experiments/tasks/{ner,re,qa}.py). The launcher
calls, in this order:

1. `task.extra_tokens(config)` -> tokens added to the tokenizer (`load_tokenizer(...,
   extra_tokens=...)`) and to the embedding table (`surgery.extend_vocab`). Return `[]` when
   the task needs none (NER, QA); RE returns e.g. `["@GENE$", "@DISEASE$"]`.
2. `task.load(config, tokenizer) -> {"train": SplitData, "dev": SplitData?, "test":
   SplitData | list[SplitData]?}`. `features` holds numpy arrays whose first axis is the
   number of features (windows); every array with that first axis is batched, sliced and
   fed to `model_inputs`/`loss`. Train features are shuffled by the launcher each epoch.
   `"test"` may be a list of SplitData (QA: several BioASQ batches); the launcher then
   evaluates each one and reports `{"batches": [...], "average": {...}}`.
   `config.max_train_examples` / `config.max_eval_examples` (0 = all) cap the *examples*
   read (sentences, relation rows, questions), not the features.
3. `task.make_model(bert_config, config, dtype) -> flax.linen.Module` whose params are
   `{"encoder": <BertEncoder tree>, "<head>": ...}`; initialised by
   `biobert_jax.models.init_params(module, rng, **task.init_kwargs(config))`, then the
   pre-trained encoder is grafted in (`surgery.graft_encoder`).
4. Training: `task.model_inputs(batch)` -> kwargs for `module.apply` besides params,
   `deterministic` and `rngs` (e.g. `input_ids`, `token_type_ids`, `attention_mask`,
   `entity_positions`). `task.loss(outputs, batch) -> (scalar mean loss, {name: scalar})`
   where `outputs` is exactly what `module.apply` returned (logits array, or a tuple for
   QA). Both are traced inside `jax.jit`: use jnp, no Python control flow on values.
5. Evaluation: the launcher runs the model over all features of a split (padding the last
   batch and cutting the padding off) and calls `task.predict_outputs(outputs)` (inside jit)
   to turn raw outputs into a dict of arrays (e.g. `{"logits": ...}` or
   `{"start_logits", "end_logits"}`), concatenated over the split into numpy.
   `task.evaluate(outputs, split, config) -> dict` must be JSON-able and contain
   `task.primary_metric` (e.g. "f1"), used for best-epoch selection on dev (higher is
   better).
6. `task.write_predictions(outputs, split, out_path_prefix) -> list[str]` writes files
   (e.g. `<prefix>.conll`, `<prefix>.tsv`, `<prefix>.json`) and returns their paths.
7. `task.export_info(config, split_data) -> dict` is merged into `<workdir>/model/task.json`
   next to the native checkpoint, so `experiments.predict` can rebuild the model (e.g.
   NER stores its label list, RE its label list and pooling).

8. Optional, for `experiments.predict`: a module-level function
   `predict_records(model_dir, records: list[dict]) -> list[dict]` in the adapter module
   (records carry "text"; returned records add the task's predictions).

Launcher details an adapter may rely on: training batches are `batch_size` rows (the
remainder of an epoch is dropped, one compiled shape); evaluation batches are padded to
`eval_batch_size` by repeating the first row and the padding is cut off before
`evaluate`. When `config.bucket_length > 0` (the NER preset sets 32), every
[B, max_seq_length, ...] feature array of a batch is cut to the batch's longest
attention_mask row rounded up to a multiple of bucket_length, evaluation runs sorted by
length, and [B, length, ...] outputs are padded back to max_seq_length with zeros (and
returned in feature order). Leave it 0 for a task whose features cannot be trimmed.

Each adapter module defines a module-level `TASK` object (an instance implementing `Task`);
`biobert_jax.tasks.get_task(name)` imports the module lazily and returns it.

Config: `experiments/configs/finetune.py` (`get_config("ner"|"re"|"qa")`), per-task
settings in the sub-dict named after the task (`config.ner`, `config.re`, `config.qa`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from data_pipeline import paths


@dataclasses.dataclass
class SplitData:
  """One split of a task, featurised.

  Attributes:
    features: model inputs + labels/weights; every array's first axis is the number of
      features (windows). Integer arrays are fed as int32.
    examples: the original examples (sentences, relation rows, questions), for evaluation
      and for writing predictions.
    extra: anything else the adapter needs at evaluation time (e.g. window -> sentence
      maps, label names).
  """
  features: dict[str, np.ndarray]
  examples: Any
  extra: dict = dataclasses.field(default_factory=dict)

  @property
  def num_features(self) -> int:
    return int(next(iter(self.features.values())).shape[0])


class Task(Protocol):
  """What the launcher needs from a task family; see the module docstring for the flow."""

  name: str            # "ner" | "re" | "qa"
  primary_metric: str  # key of evaluate()'s result used for best-epoch selection

  def load(self, config: ml_collections.ConfigDict,
           tokenizer: Any) -> dict[str, SplitData | list[SplitData]]:
    ...

  def extra_tokens(self, config: ml_collections.ConfigDict) -> list[str]:
    ...

  def make_model(self, bert_config: Any, config: ml_collections.ConfigDict,
                 dtype: Any) -> nn.Module:
    ...

  def init_kwargs(self, config: ml_collections.ConfigDict) -> dict:
    """Extra kwargs for `init_params` (e.g. {"seq_len": 16}); {} is fine."""
    ...

  def model_inputs(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    ...

  def loss(self, outputs: Any, batch: dict[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    ...

  def predict_outputs(self, outputs: Any) -> dict[str, jax.Array]:
    ...

  def evaluate(self, outputs: dict[str, np.ndarray], split: SplitData,
               config: ml_collections.ConfigDict) -> dict:
    ...

  def write_predictions(self, outputs: dict[str, np.ndarray], split: SplitData,
                        out_path_prefix: str) -> list[str]:
    ...

  def export_info(self, config: ml_collections.ConfigDict,
                  splits: dict[str, Any]) -> dict:
    ...


def default_data_dir(config: ml_collections.ConfigDict) -> str:
  """The corpus directory a config points at (config.data_dir or the task default)."""
  if config.data_dir:
    return str(config.data_dir)
  sub = config[config.task]
  return str(paths.data_path(config.task, sub.get("corpus", "")))


def masked_cross_entropy(logits: jax.Array, labels: jax.Array,
                         weights: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Weighted mean softmax cross-entropy; labels < 0 (e.g. -100) are ignored.

  Returns (mean loss, total weight). Shared by the adapters so they agree on the
  ignore-label convention.
  """
  import jax.numpy as jnp
  import optax

  safe = jnp.where(labels < 0, 0, labels)
  weights = jnp.where(labels < 0, 0.0, weights.astype(jnp.float32))
  per = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
  total = jnp.sum(weights)
  return jnp.sum(per * weights) / jnp.maximum(total, 1.0), total
