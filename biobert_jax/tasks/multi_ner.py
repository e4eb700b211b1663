"""Multi-task NER adapter: one encoder, one token-classification head per corpus
(`config.ner.corpora`); each corpus scored on its own tags, primary `f1` = their mean.
"""
from __future__ import annotations

import pathlib
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from biobert_jax import fs
from biobert_jax.metrics import ner as ner_metrics
from biobert_jax.models import BertForMultiTokenClassification
from biobert_jax.tasks.base import SplitData, TaskData, masked_cross_entropy
from biobert_jax.tasks.ner import SPLIT_FILES
from data_pipeline import paths
from data_pipeline.tasks import ner as ner_data


def head_name(corpus: str) -> str:
  """A parameter-tree-safe head name for a corpus ("NCBI-disease" -> "NCBI_disease")."""
  return re.sub(r"[^A-Za-z0-9]+", "_", corpus).strip("_")


def split_labels(labels: list[str]) -> dict[str, list[str]]:
  """"<head>/<tag>" labels -> {head: [tags]} in sorted head order (the corpus_id order)."""
  heads: dict[str, list[str]] = {}
  for label in labels:
    head, sep, tag = label.partition("/")
    if not sep:
      raise ValueError(f"multi_ner label {label!r} is not '<head>/<tag>'")
    heads.setdefault(head, []).append(tag)
  return dict(sorted(heads.items()))


def _corpus_dirs(config: ml_collections.ConfigDict) -> dict[str, pathlib.Path]:
  corpora = list(config.ner.get("corpora", ()))
  if len(corpora) < 1:
    raise ValueError("config.ner.corpora is empty: name the NER corpora to train jointly")
  dirs = {}
  for corpus in corpora:
    root = (fs.path(config.data_dir) / corpus if config.data_dir
            else paths.data_path("ner", corpus))
    if head_name(corpus) in {head_name(c) for c in dirs}:
      raise ValueError(f"config.ner.corpora: {corpus!r} repeats a corpus (or its head name)")
    dirs[corpus] = fs.path(root)
  return dirs


def _concat(parts: list[tuple[str, SplitData]]) -> SplitData:
  """One SplitData from per-corpus ones; extra keeps each corpus's rows and windows."""
  features = {k: np.concatenate([p.features[k] for _, p in parts])
              for k in parts[0][1].features}
  examples, spans, row = [], [], 0
  for head, part in parts:
    n = part.num_features
    spans.append({"head": head, "rows": (row, row + n),
                  "sentences": (len(examples), len(examples) + len(part.examples)),
                  "extra": part.extra})
    examples.extend(part.examples)
    row += n
  return SplitData(features, examples, {"corpora": spans})


class MultiNerTask:
  """Joint NER over several corpora, one head each (see the module docstring)."""

  name = "multi_ner"
  primary_metric = "f1"

  def extra_tokens(self, config: ml_collections.ConfigDict) -> list[str]:
    del config
    return []

  def load(self, config: ml_collections.ConfigDict, tokenizer: Any) -> TaskData:
    sub = config.ner
    per_corpus = {}
    for corpus, root in _corpus_dirs(config).items():
      raw = {}
      for split, filename in SPLIT_FILES.items():
        path = root / filename
        if not path.exists():
          if split == "train":
            raise FileNotFoundError(f"NER training file {path} not found "
                                    f"(config.ner.corpora / config.data_dir)")
          continue
        limit = config.max_train_examples if split == "train" else config.max_eval_examples
        raw[split], _ = ner_data.read_conll(path, scheme=sub.scheme, invalid_i=sub.invalid_i,
                                            max_sentences=int(limit))
      per_corpus[head_name(corpus)] = (
          raw, ner_data.label_list([s for sents in raw.values() for s in sents]))
    heads = sorted(per_corpus)
    splits = {}
    for split in SPLIT_FILES:
      parts = []
      for k, head in enumerate(heads):
        raw, labels = per_corpus[head]
        if split not in raw:
          continue
        features, extra = ner_data.featurize_sentences(raw[split], tokenizer, labels,
                                                       config.max_seq_length,
                                                       config.doc_stride)
        features["corpus_id"] = np.full((features["input_ids"].shape[0],), k, np.int32)
        parts.append((head, SplitData(features, list(raw[split]), extra)))
      if parts:
        splits[split] = _concat(parts)
    labels = [f"{head}/{tag}" for head in heads for tag in per_corpus[head][1]]
    return TaskData(splits, labels)

  def make_model(self, bert_config: Any, config: ml_collections.ConfigDict,
                 labels: list[str], dtype: Any) -> nn.Module:
    del config
    heads = tuple((head, len(tags)) for head, tags in split_labels(labels).items())
    return BertForMultiTokenClassification(bert_config, heads=heads, dtype=dtype)

  def model_inputs(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}

  def loss(self, outputs: dict[str, jax.Array], batch: dict[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    labels, corpus = batch["labels"], batch["corpus_id"]
    total_loss, total_weight, hits = 0.0, 0.0, 0.0
    for k, head in enumerate(sorted(outputs)):
      mine = jnp.where((corpus == k)[:, None], labels, -100)
      loss, weight = masked_cross_entropy(outputs[head], mine,
                                          jnp.ones(mine.shape, jnp.float32))
      total_loss += loss * weight
      total_weight += weight
      hits += jnp.sum((jnp.argmax(outputs[head], -1) == mine) & (mine >= 0))
    loss = total_loss / jnp.maximum(total_weight, 1.0)
    return loss, {"loss": loss, "token_accuracy": hits / jnp.maximum(total_weight, 1.0)}

  def predict_outputs(self, outputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {f"probs_{head}": jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
            for head, logits in outputs.items()}

  def decode(self, outputs: dict[str, np.ndarray], split: SplitData,
             config: ml_collections.ConfigDict) -> list[list[str]]:
    """Tags per word of every sentence, each corpus decoded by its own head."""
    del config
    decoded: list[list[str]] = []
    for part in split.extra["corpora"]:
      (r0, r1), (s0, s1) = part["rows"], part["sentences"]
      pred_ids = np.argmax(outputs[f"probs_{part['head']}"][r0:r1], axis=-1)
      merged = ner_data.merge_windows(pred_ids, part["extra"],
                                      [len(s.words) for s in split.examples[s0:s1]])
      tags = part["extra"]["labels"]
      decoded.extend([tags[i] for i in ids] for ids in merged)
    return decoded

  def evaluate(self, decoded: list[list[str]], split: SplitData,
               config: ml_collections.ConfigDict) -> dict:
    del config
    per_corpus = {}
    for part in split.extra["corpora"]:
      s0, s1 = part["sentences"]
      per_corpus[part["head"]] = ner_metrics.ner_scores(
          [s.tags for s in split.examples[s0:s1]], decoded[s0:s1])
    result: dict[str, Any] = {
        k: float(np.mean([r[k] for r in per_corpus.values()]))
        for k in ("precision", "recall", "f1")}
    result["per_corpus"] = per_corpus
    result.update({f"f1_{head}": r["f1"] for head, r in per_corpus.items()})
    return result

  def write_predictions(self, decoded: list[list[str]], split: SplitData,
                        out_path_prefix: str) -> list[str]:
    """One CoNLL file (`token gold pred`) per corpus: `<prefix>_<head>.conll`."""
    written = []
    for part in split.extra["corpora"]:
      s0, s1 = part["sentences"]
      path = f"{out_path_prefix}_{part['head']}.conll"
      with fs.open(path, "w", encoding="utf-8") as f:
        for sentence, tags in zip(split.examples[s0:s1], decoded[s0:s1]):
          for word, gold, p in zip(sentence.words, sentence.tags, tags):
            f.write(f"{word} {gold} {p}\n")
          f.write("\n")
      written.append(path)
    return written

  def export_info(self, config: ml_collections.ConfigDict, labels: list[str]) -> dict:
    corpora = {head_name(c): c for c in config.ner.get("corpora", ())}
    return {"heads": [{"name": head, "corpus": corpora.get(head, head), "labels": tags}
                      for head, tags in split_labels(labels).items()]}


TASK = MultiNerTask()
