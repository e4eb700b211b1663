"""The NER task adapter: first-piece labels, windows, conlleval F1.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from biobert_jax import fs
from biobert_jax.metrics import ner as ner_metrics
from biobert_jax.models import BertForTokenClassification
from biobert_jax.tasks.base import SplitData, TaskData, default_data_dir, masked_cross_entropy
from data_pipeline.tasks import ner as ner_data

SPLIT_FILES = {"train": "train.tsv", "dev": "devel.tsv", "test": "test.tsv"}


def featurize(sentences: Sequence[ner_data.Sentence], tokenizer: Any, labels: Sequence[str],
              max_seq_length: int, stride: int) -> SplitData:
  """Sentences -> a SplitData of windows (data_pipeline.tasks.ner.featurize_sentences)."""
  features, extra = ner_data.featurize_sentences(sentences, tokenizer, labels,
                                                 max_seq_length, stride)
  return SplitData(features, list(sentences), extra)


class NerTask:
  """Token classification over IOB2 tags."""

  name = "ner"
  primary_metric = "f1"

  def extra_tokens(self, config: ml_collections.ConfigDict) -> list[str]:
    del config
    return []

  def load(self, config: ml_collections.ConfigDict, tokenizer: Any) -> TaskData:
    root = fs.path(default_data_dir(config))
    sub = config.ner
    raw = {}
    for split, filename in SPLIT_FILES.items():
      path = root / filename
      if not path.exists():
        if split == "train":
          raise FileNotFoundError(f"NER training file {path} not found (config.data_dir)")
        continue
      limit = config.max_train_examples if split == "train" else config.max_eval_examples
      raw[split], _ = ner_data.read_conll(path, scheme=sub.scheme, invalid_i=sub.invalid_i,
                                          max_sentences=int(limit))
    # The label inventory covers every split, so a type missing from a small training
    # subset still has an output (it is then simply never predicted).
    labels = ner_data.label_list([s for sents in raw.values() for s in sents])
    splits = {split: featurize(sents, tokenizer, labels, config.max_seq_length,
                               config.doc_stride) for split, sents in raw.items()}
    return TaskData(splits, labels)

  def make_model(self, bert_config: Any, config: ml_collections.ConfigDict,
                 labels: list[str], dtype: Any) -> nn.Module:
    del config
    return BertForTokenClassification(bert_config, num_labels=len(labels), dtype=dtype)

  def model_inputs(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}

  def loss(self, outputs: jax.Array, batch: dict[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    labels = batch["labels"]
    loss, total = masked_cross_entropy(outputs, labels, jnp.ones(labels.shape, jnp.float32))
    hit = (jnp.argmax(outputs, -1) == labels) & (labels >= 0)
    return loss, {"loss": loss, "token_accuracy": jnp.sum(hit) / jnp.maximum(total, 1.0)}

  def predict_outputs(self, outputs: jax.Array) -> dict[str, jax.Array]:
    return {"probs": jax.nn.softmax(outputs.astype(jnp.float32), axis=-1)}

  def decode(self, outputs: dict[str, np.ndarray], split: SplitData,
             config: ml_collections.ConfigDict) -> list[list[str]]:
    """Predicted tags per word of every sentence (each word from the window owning it)."""
    del config
    labels = split.extra["labels"]
    pred_ids = np.argmax(outputs["probs"], axis=-1)
    merged = ner_data.merge_windows(pred_ids, split.extra,
                                    [len(s.words) for s in split.examples])
    return [[labels[i] for i in ids] for ids in merged]

  def evaluate(self, decoded: list[list[str]], split: SplitData,
               config: ml_collections.ConfigDict) -> dict:
    del config
    return ner_metrics.ner_scores([s.tags for s in split.examples], decoded)

  def write_predictions(self, decoded: list[list[str]], split: SplitData,
                        out_path_prefix: str) -> list[str]:
    """CoNLL format `token gold pred`, blank line between sentences (conlleval's input)."""
    path = f"{out_path_prefix}.conll"
    with fs.open(path, "w", encoding="utf-8") as f:
      for sentence, tags in zip(split.examples, decoded):
        for word, gold, p in zip(sentence.words, sentence.tags, tags):
          f.write(f"{word} {gold} {p}\n")
        f.write("\n")
    return [path]

  def export_info(self, config: ml_collections.ConfigDict, labels: list[str]) -> dict:
    del config
    return {"labels": list(labels)}


TASK = NerTask()
