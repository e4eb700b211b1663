"""Relation-extraction adapter (GAD, EU-ADR, ChemProt from BioBERT TSVs or the raw release),
with `[CLS]` or entity-start pooling.
"""
from __future__ import annotations

import functools
import random
import re
from typing import Any

import jax
import jax.numpy as jnp
from absl import logging
import ml_collections
import numpy as np

from biobert_jax import fs
from biobert_jax.metrics import re as re_metrics
from biobert_jax.models import BertForSequenceClassification
from data_pipeline.tasks import chemprot
from data_pipeline.tasks import re as re_data
from biobert_jax.tasks.base import SplitData, TaskData, default_data_dir, masked_cross_entropy

_MARKER_PATTERN = re.compile(r"@[A-Z][A-Z-]*\$")


def _data_dir(config: ml_collections.ConfigDict) -> str:
    return default_data_dir(config)


def dataset_kind(config: ml_collections.ConfigDict) -> str:
  kind = config.re.get("dataset", "auto")
  if kind in ("auto", "", "gad"):
    detected = re_data.detect_dataset(_data_dir(config))
    if kind == "gad" and detected != "biobert_tsv":
      raise ValueError(f"re.dataset='gad' but {_data_dir(config)} holds {detected}")
    return detected
  if kind not in ("chemprot", "biobert_tsv"):
    raise ValueError(f"re.dataset must be auto|gad|chemprot|biobert_tsv, got {kind!r}")
  return kind


@functools.lru_cache(maxsize=8)
def _tsv_summary(data_dir: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(sorted labels of train.tsv, anonymisation markers in file order of first use)."""
  examples = re_data.read_relation_tsv(fs.path(data_dir) / "train.tsv")
  markers: dict[str, None] = {}
  for e in examples:
    for m in _MARKER_PATTERN.findall(e.text):
      markers.setdefault(m, None)
  return tuple(sorted({e.label for e in examples})), tuple(markers)


def label_list(config: ml_collections.ConfigDict) -> list[str]:
  if config.re.get("labels"):
    return list(config.re.labels)
  if dataset_kind(config) == "chemprot":
    return list(re_data.CHEMPROT_LABELS)
  labels, _ = _tsv_summary(_data_dir(config))
  expected = re_data.expected_labels(entity_markers(config)[0])
  if expected is not None:  # a known corpus: its own labels, other labels are errors
    return list(expected)
  if "false" in labels:  # negative class first, like BioBERT's label lists
    labels = ("false",) + tuple(l for l in labels if l != "false")
  return list(labels)


def entity_markers(config: ml_collections.ConfigDict) -> tuple[tuple[str, str], str | None]:
  """(the two markers in entity_positions order, the overlap marker or None)."""
  if dataset_kind(config) == "chemprot":
    return re_data.CHEMPROT_MARKERS, re_data.CHEMPROT_OVERLAP_MARKER
  _, found = _tsv_summary(_data_dir(config))
  overlap = re_data.CHEMPROT_OVERLAP_MARKER if re_data.CHEMPROT_OVERLAP_MARKER in found else None
  pair = tuple(m for m in found if m != re_data.CHEMPROT_OVERLAP_MARKER)
  if set(pair) == set(re_data.CHEMPROT_MARKERS):
    pair = re_data.CHEMPROT_MARKERS
  elif set(pair) == set(re_data.GAD_MARKERS):
    pair = re_data.GAD_MARKERS
  if len(pair) != 2:
    raise ValueError(f"{_data_dir(config)}/train.tsv: expected two anonymisation markers "
                     f"(like @GENE$, @DISEASE$), found {list(found)}")
  return pair, overlap


def marker_mode(config: ml_collections.ConfigDict) -> str:
  mode = config.re.get("markers", "new_tokens")
  if mode not in re_data.MARKER_MODES:
    raise ValueError(f"re.markers={mode!r}; valid: {', '.join(re_data.MARKER_MODES)}")
  return mode


def _log_marker_stats(split: str, stats: dict) -> None:
  # Rows without both markers are kept (entity_start pooling reads [CLS] for the missing
  # one) but must not pass unnoticed; evaluate() copies the counts into eval_results.json.
  if stats.get("rows_missing_marker"):
    logging.warning("RE %s: %d rows lack an entity marker (first: %s)", split,
                    stats["rows_missing_marker"], stats["missing_marker_guids"])
  if stats.get("rows_marker_cut"):
    logging.warning("RE %s: %d rows have a marker outside the max_seq_length window "
                    "(first: %s)", split, stats["rows_marker_cut"], stats["marker_cut_guids"])


def _negative_label(labels: list[str]) -> str:
  return "false" if "false" in labels else "0"


def _subsample(examples: list, limit: int, seed: int) -> list:
  if not limit or limit >= len(examples):
    return list(examples)
  keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
  return [examples[i] for i in keep]


class RelationExtractionTask:
  """The `Task` for sentence-level relation classification."""

  name = "re"
  primary_metric = "f1"

  def extra_tokens(self, config: ml_collections.ConfigDict) -> list[str]:
    if config.re.get("extra_tokens"):
      return list(config.re.extra_tokens)
    if marker_mode(config) == "word_pieces":
      return []  # BioBERT's input: the markers are ordinary text
    pair, overlap = entity_markers(config)
    return list(pair) + ([overlap] if overlap else [])

  def read_examples(self, config: ml_collections.ConfigDict
                    ) -> tuple[dict[str, list[re_data.RelationExample]], dict]:
    """Examples per split before featurisation, and preprocessing statistics."""
    data_dir = _data_dir(config)
    stats: dict[str, Any] = {}
    if dataset_kind(config) == "chemprot":
      raw = re_data.chemprot_raw_dir(data_dir)
      splits, stats = chemprot.build_all(raw, config.re.get("multi_label", "both"))
    else:
      splits = re_data.read_biobert_splits(data_dir, allowed_labels=label_list(config))
    fraction = float(config.re.get("dev_fraction", 0.0))
    if "dev" not in splits and fraction > 0:
      splits["train"], splits["dev"] = re_data.carve_dev(
          splits["train"], fraction, int(config.re.get("dev_seed", 12345)))
    splits["train"] = _subsample(splits["train"], config.max_train_examples, config.seed)
    for split in ("dev", "test"):
      if split in splits:
        splits[split] = _subsample(splits[split], config.max_eval_examples, config.seed)
    return splits, stats

  def load(self, config: ml_collections.ConfigDict, tokenizer: Any) -> TaskData:
    splits, stats = self.read_examples(config)
    labels = label_list(config)
    label_to_id = {l: i for i, l in enumerate(labels)}
    pair, overlap = entity_markers(config)
    out = {}
    for split, examples in splits.items():
      unknown = sorted({e.label for e in examples} - set(labels))
      if unknown:
        raise ValueError(f"{_data_dir(config)} {split}: labels {unknown} are not in the "
                         f"label list {labels}")
      features, feat_stats = re_data.featurize_relations(
          examples, tokenizer, label_to_id, config.max_seq_length, pair, overlap,
          marker_mode=marker_mode(config))
      _log_marker_stats(split, feat_stats)
      out[split] = SplitData(features, examples, {
          "labels": labels, "split": split, "featurize": feat_stats,
          "preprocess": stats.get(split, {})})
    return TaskData(out, labels)

  def make_model(self, bert_config: Any, config: ml_collections.ConfigDict,
                 labels: list[str], dtype: Any):
    return BertForSequenceClassification(bert_config, num_labels=len(labels),
                                         pooling=config.re.get("pooling", "cls"), dtype=dtype)

  def model_inputs(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    # entity_positions is always passed; the "cls" model ignores it.
    return {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask",
                                  "entity_positions")}

  def loss(self, outputs: Any, batch: dict[str, jax.Array]):
    labels = batch["label_ids"]
    weights = batch.get("weights", jnp.ones(labels.shape, jnp.float32))
    loss, total = masked_cross_entropy(outputs, labels, weights)
    correct = (jnp.argmax(outputs, -1) == labels).astype(jnp.float32) * (labels >= 0)
    return loss, {"loss": loss, "accuracy": jnp.sum(correct * weights) / jnp.maximum(total, 1)}

  def predict_outputs(self, outputs: Any) -> dict[str, jax.Array]:
    return {"logits": outputs}

  def decode(self, outputs: dict[str, np.ndarray], split: SplitData,
             config: ml_collections.ConfigDict) -> dict[str, Any]:
    """{"labels": predicted label per row, "probs": [N, num_labels] softmax (float64)}."""
    del config
    labels = split.extra["labels"]
    logits = np.asarray(outputs["logits"], np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return {"labels": [labels[i] for i in np.argmax(logits, axis=-1)], "probs": probs}

  def evaluate(self, decoded: dict[str, Any], split: SplitData,
               config: ml_collections.ConfigDict) -> dict:
    del config
    labels = split.extra["labels"]
    pred = decoded["labels"]
    gold = [e.label for e in split.examples]
    if set(labels) == {"0", "1"}:
      result = re_metrics.binary_prf(gold, pred, positive="1")
    else:
      negative = _negative_label(labels)
      result = re_metrics.micro_prf(gold, pred, [l for l in labels if l != negative])
    result["num_examples"] = len(gold)
    feat = split.extra.get("featurize", {})
    for key in ("rows_missing_marker", "rows_marker_cut", "truncated"):
      if key in feat:
        result[key] = int(feat[key])
    return result

  def write_predictions(self, decoded: dict[str, Any], split: SplitData,
                        out_path_prefix: str) -> list[str]:
    """<prefix>.tsv: guid, gold, predicted label and one probability column per label
    (BioBERT writes only the probabilities; the extra columns make errors readable)."""
    labels = split.extra["labels"]
    path = f"{out_path_prefix}.tsv"
    with fs.open(path, "w", encoding="utf-8") as f:
      f.write("\t".join(["index", "label", "prediction", *labels]) + "\n")
      for e, pred, p in zip(split.examples, decoded["labels"], decoded["probs"]):
        f.write("\t".join([e.guid, e.label, pred,
                           *(f"{x:.6f}" for x in p)]) + "\n")
    return [path]

  def export_info(self, config: ml_collections.ConfigDict, labels: list[str]) -> dict:
    pair, overlap = entity_markers(config)
    return {"labels": list(labels), "pooling": config.re.get("pooling", "cls"),
            "markers": list(pair), "overlap_marker": overlap,
            "marker_mode": marker_mode(config), "dataset": dataset_kind(config), "max_seq_length": config.max_seq_length}  # noqa: E501


TASK = RelationExtractionTask()

__all__ = ["TASK", "RelationExtractionTask", "label_list", "entity_markers", "dataset_kind"]
