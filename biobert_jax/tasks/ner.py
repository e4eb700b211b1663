"""The NER task adapter (biobert_jax/tasks/base.py) and raw-text tagging.

Training/evaluation: sentences from `<data_dir>/{train,devel,test}.tsv` (IOB2 after reading),
one label per word on its first piece, windows for long sentences, conlleval entity F1.

Raw text: `tag_texts(model_dir_or_predictor, texts)` splits each text into words the way
BERT's basic tokenizer does (a piece without "##" starts a word, so punctuation is its own
word), predicts with the same windows, and returns entities with character offsets into the
original text and a score (mean over the entity's words of the max softmax probability at
the word's first piece).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from biobert_jax import fs
from biobert_jax.metrics import ner as ner_metrics
from biobert_jax.models import BertForTokenClassification
from biobert_jax.tasks.base import SplitData, TaskData, default_data_dir, masked_cross_entropy
from biobert_jax.trainers import model_dir as model_dir_lib
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


# ---- raw-text prediction -------------------------------------------------------------------


@dataclasses.dataclass
class Word:
  start: int
  end: int
  piece_ids: list[int]


def split_words(tokenizer: Any, text: str) -> list[Word]:
  """BERT words of `text` with character spans: a piece without '##' starts a new word."""
  (ids, spans), = tokenizer.encode_with_offsets([text])
  pieces = tokenizer.convert_ids_to_tokens(ids)
  words: list[Word] = []
  for piece_id, piece, (start, end) in zip(ids, pieces, spans):
    if words and piece.startswith("##"):
      words[-1].end = max(words[-1].end, end)
      words[-1].piece_ids.append(piece_id)
    else:
      words.append(Word(start, end, [piece_id]))
  return words


@functools.lru_cache(maxsize=8)
def _probs_fn(bert_config: Any, num_labels: int):
  """The jit'd softmax of the model, shared by predictors of the same architecture."""
  module = BertForTokenClassification(bert_config, num_labels=num_labels)

  @jax.jit
  def probs(params, input_ids, token_type_ids, attention_mask):
    logits = module.apply({"params": params}, input_ids, token_type_ids, attention_mask,
                          deterministic=True)
    return jax.nn.softmax(logits, axis=-1)

  return probs


class NerPredictor:
  """A fine-tuned NER model loaded from a finetune workdir (or its model/ subdir)."""

  def __init__(self, model_dir: str | os.PathLike, batch_size: int = 32):
    loaded = model_dir_lib.load_finetuned(model_dir)
    if loaded.info.get("task") != "ner":
      raise ValueError(f"{loaded.model_dir}/task.json is for task "
                       f"{loaded.info.get('task')!r}, not 'ner'")
    self.labels = list(loaded.info["labels"])
    self.tokenizer = loaded.tokenizer
    self.max_seq_length = int(loaded.info["max_seq_length"])
    self.stride = int(loaded.info.get("doc_stride", self.max_seq_length // 2))
    self.batch_size = batch_size
    self.params = loaded.params
    self._probs = _probs_fn(loaded.bert_config, len(self.labels))

  def word_probs(self, words_per_text: Sequence[Sequence[Word]]) -> list[np.ndarray]:
    aligned = [ner_data.align_pieces([w.piece_ids for w in words], self.tokenizer.unk_id)
               for words in words_per_text]
    features, extra = ner_data.build_features(
        aligned, None, cls_id=self.tokenizer.cls_id, sep_id=self.tokenizer.sep_id,
        pad_id=self.tokenizer.pad_id, max_seq_length=self.max_seq_length, stride=self.stride)
    n = features["input_ids"].shape[0]
    chunks = []
    for start in range(0, n, self.batch_size):
      batch = {k: v[start:start + self.batch_size] for k, v in features.items()}
      rows = batch["input_ids"].shape[0]
      if rows < self.batch_size:  # pad to one shape: one compilation for every call
        batch = {k: np.concatenate([v, np.zeros((self.batch_size - rows,) + v.shape[1:],
                                                v.dtype)]) for k, v in batch.items()}
      out = self._probs(self.params, batch["input_ids"], batch["token_type_ids"],
                        batch["attention_mask"])
      chunks.append(np.asarray(out)[:rows])
    probs = np.concatenate(chunks) if chunks else np.zeros((0, self.max_seq_length,
                                                            len(self.labels)))
    return ner_data.merge_windows(probs, extra, [len(w) for w in words_per_text])

  def tag(self, texts: Sequence[str]) -> list[list[dict]]:
    words_per_text = [split_words(self.tokenizer, t) for t in texts]
    results = []
    for text, words, probs in zip(texts, words_per_text, self.word_probs(words_per_text)):
      tags = [self.labels[i] for i in np.argmax(probs, axis=-1)] if len(words) else []
      entities = []
      for entity_type, first, last in ner_metrics.get_entities(tags):
        start, end = words[first].start, words[last].end
        score = float(np.mean(np.max(probs[first:last + 1], axis=-1)))
        entities.append({"type": entity_type, "start": start, "end": end,
                         "text": text[start:end], "score": score})
      results.append(entities)
    return results


def tag_texts(model: str | os.PathLike | NerPredictor,
              texts: Sequence[str]) -> list[list[dict]]:
  """Entities per text: dicts with type, start, end (character offsets), text, score."""
  predictor = model if isinstance(model, NerPredictor) else NerPredictor(model)
  return predictor.tag(texts)


def predict_records(model_dir: str, records: Sequence[dict]) -> list[dict]:
  """`experiments.predict` hook: records with "text" -> records with "entities" added."""
  entities = tag_texts(model_dir, [r["text"] for r in records])
  return [{**r, "entities": e} for r, e in zip(records, entities)]

