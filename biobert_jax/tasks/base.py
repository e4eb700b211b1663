"""The task-adapter interface of the fine-tuning trainer (`Task`; call order in its docstring)."""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

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


@dataclasses.dataclass
class TaskData:
  """What `Task.load` returns: the featurised splits and the output labels (id order)."""
  splits: dict[str, SplitData | list[SplitData]]
  labels: list[str] = dataclasses.field(default_factory=list)


class Task(Protocol):
  """What the trainer (`trainers/finetune.py`) needs from a task family. It calls, in this order:

  1. `task.extra_tokens(config)` -> tokens added to the tokenizer (`load_tokenizer(...,
     extra_tokens=...)`) and to the embedding table (`surgery.extend_vocab`); `[]` when the
     task needs none (NER, QA); RE returns e.g. `["@GENE$", "@DISEASE$"]`.
  2. `task.load(config, tokenizer) -> TaskData(splits, labels)`. `splits` maps "train",
     "dev"?, "test"? to `SplitData` ("test" may be a list of SplitData: QA's BioASQ batches;
     the trainer then reports each plus `{"batches": [...], "average": {...}}`). `labels`
     are the output classes in id order ([] for QA). Adapters keep no state: everything a
     later call needs is in TaskData or the config. `config.max_train_examples` /
     `config.max_eval_examples` (0 = all) cap the *examples* read, not the features.
  3. `task.make_model(bert_config, config, labels, dtype) -> flax.linen.Module` whose params
     are `{"encoder": <BertEncoder tree>, "<head>": ...}`; initialised with
     `biobert_jax.models.init_params(module, rng)` (its dummy inputs trace every param),
     then the pre-trained encoder is grafted in (`surgery.graft_encoder`).
  4. Training: `task.model_inputs(batch)` -> kwargs for `module.apply` besides params,
     `deterministic` and `rngs`. `task.loss(outputs, batch) -> (scalar mean loss, {name:
     scalar})` with `outputs` exactly what `module.apply` returned. Both are traced inside
     `jax.jit`: jnp only, no Python control flow on values.
  5. Evaluation, per split: the trainer runs the model over all features (padding the last
     batch and cutting the padding off) and calls `task.predict_outputs(outputs)` (inside
     jit) -> a dict of arrays concatenated over the split into numpy. Then, on the host:
     `decoded = task.decode(outputs, split, config)` ONCE (tags per word, labels per row,
     ranked answers per question), `task.evaluate(decoded, split, config) -> dict`
     (JSON-able, holding `task.primary_metric`, higher is better, used for best-epoch
     selection on dev) and `task.write_predictions(decoded, split, out_path_prefix) ->
     list[str]` (files written, e.g. `<prefix>.conll`).
  6. `task.export_info(config, labels) -> dict` is merged into `<workdir>/model/task.json`
     next to the native checkpoint, so prediction can rebuild the model.
  7. Optional, for `experiments.predict`: raw-text prediction lives in
     `biobert_jax.trainers.predict` (`RECORD_PREDICTORS[task]`: load, then predict), which
     reads the model directory that adapters do not import.

  Trainer details an adapter may rely on: training batches are `batch_size` rows (the
  remainder of an epoch is dropped: one compiled shape); evaluation batches are padded to
  `eval_batch_size`. When `config.bucket_length > 0` (the NER preset sets 32), every
  [B, max_seq_length, ...] feature array of a batch is cut to the batch's longest
  attention_mask row rounded up to a multiple of bucket_length, evaluation runs sorted by
  length, and [B, length, ...] outputs are padded back to max_seq_length with zeros (and
  returned in feature order). Leave it 0 for a task whose features cannot be trimmed.

  Each adapter module defines a module-level `TASK` (an instance implementing `Task`);
  `biobert_jax.tasks.get_task(name)` imports the module lazily and returns it.
  Config: `biobert_jax/configs/finetune.py` (`get_config("ner"|"re"|"qa")`), per-task
  settings in the sub-dict named after the task (`config.ner`, `config.re`, `config.qa`).
  """

  name: str            # "ner" | "re" | "qa"
  primary_metric: str  # key of evaluate()'s result used for best-epoch selection

  def extra_tokens(self, config: ml_collections.ConfigDict) -> list[str]:
    ...

  def load(self, config: ml_collections.ConfigDict, tokenizer: Any) -> TaskData:
    ...

  def make_model(self, bert_config: Any, config: ml_collections.ConfigDict,
                 labels: list[str], dtype: Any) -> nn.Module:
    ...

  def model_inputs(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    ...

  def loss(self, outputs: Any, batch: dict[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    ...

  def predict_outputs(self, outputs: Any) -> dict[str, jax.Array]:
    ...

  def decode(self, outputs: dict[str, np.ndarray], split: SplitData,
             config: ml_collections.ConfigDict) -> Any:
    ...

  def evaluate(self, decoded: Any, split: SplitData,
               config: ml_collections.ConfigDict) -> dict:
    ...

  def write_predictions(self, decoded: Any, split: SplitData,
                        out_path_prefix: str) -> list[str]:
    ...

  def export_info(self, config: ml_collections.ConfigDict, labels: list[str]) -> dict:
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
  safe = jnp.where(labels < 0, 0, labels)
  weights = jnp.where(labels < 0, 0.0, weights.astype(jnp.float32))
  per = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
  total = jnp.sum(weights)
  return jnp.sum(per * weights) / jnp.maximum(total, 1.0), total
