"""Raw-text prediction with a fine-tuned model: the library behind experiments/predict.py.

NER: `tag_texts(model_dir_or_predictor, texts)` splits each text into words the way BERT's
basic tokenizer does (a piece without "##" starts a word, so punctuation is its own word),
predicts with the training windows, and returns entities with character offsets into the
original text and a score (mean over the entity's words of the max softmax probability at
the word's first piece). `predict_file` runs it over a .jsonl or text file.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, NamedTuple
from collections.abc import Callable, Sequence

import jax
import numpy as np

from biobert_jax import fs
from biobert_jax.metrics import ner as ner_metrics
from biobert_jax.models import BertForTokenClassification
from biobert_jax.trainers import annotate_outputs as outputs_lib
from biobert_jax.trainers import batched_predict
from biobert_jax.trainers import model_dir as model_dir_lib
from biobert_jax.trainers import predict_formats
from data_pipeline import textio
from data_pipeline.errors import InputError
from data_pipeline.tasks import ner as ner_data


def read_records(path: str | os.PathLike) -> list[dict]:
  """Records with "text": from a .jsonl (field "text") or a plain one-text-per-line file.

  Raises:
    InputError: `path:line: ...` for invalid UTF-8, a broken JSON line or a JSON line
      that is not an object with a "text" string. A leading UTF-8 BOM is dropped.
  """
  path = os.fspath(path)
  records = []
  for lineno, line in textio.iter_lines(path):
    if path.endswith(".jsonl"):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg} at column "
                         f"{e.colno})") from None
      except RecursionError:
        raise InputError(f"{path}:{lineno}: JSON nested too deeply") from None
      if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise InputError(f"{path}:{lineno}: expected a JSON object with a \"text\" string")
      records.append(record)
    else:
      records.append({"text": line})
  return records


def predict_file(task: str, checkpoint: str, input_path: str, output_path: str,
                 output_format: str = "jsonl", *, chunk: int = 256, log_every_s: float = 30.0,
                 log=print) -> int:
  """Runs the task's raw-input prediction over a file; returns the number of records.

  The input is read and the output opened (under a temporary name, renamed when all is
  written) before the model loads, so a bad path fails at once. The model loads once and
  predicts in chunks of `chunk` records, with a progress line every `log_every_s` seconds.
  A BioC collection (recognised by content) is tagged passage by passage; `output_format`
  is one of `predict_formats.OUTPUT_FORMATS`.

  Raises:
    InputError: one line for a bad input line, or an output that cannot be written.
  """
  if task not in RECORD_PREDICTORS:
    raise ValueError(f"task {task!r} has no raw-input prediction (predict_records)")
  if output_format not in predict_formats.OUTPUT_FORMATS:
    raise ValueError(f"output format must be one of {predict_formats.OUTPUT_FORMATS}, "
                     f"got {output_format!r}")
  if chunk < 1:
    raise ValueError(f"chunk must be >= 1, got {chunk}")
  predictor = RECORD_PREDICTORS[task]
  bioc = predict_formats.is_bioc(input_path)
  records = None if bioc else read_records(input_path)
  if fs.isdir(output_path):
    raise InputError(f"--output {output_path} is a directory; name a file")
  tmp = fs.join(fs.dirname(fs.abspath(output_path)),
                outputs_lib.temp_name(fs.basename(output_path)))
  try:
    handle = outputs_lib.open_new(tmp)
  except OSError as e:
    raise InputError(f"--output {output_path}: cannot write there ({e.strerror})") from None
  try:
    with handle:
      model = predictor.load(checkpoint)
      tag = functools.partial(_predict_in_chunks, predictor, model, chunk=chunk,
                              log_every_s=log_every_s, log=log)
      results = predict_formats.predict_bioc(input_path, tag) if bioc else tag(records)
      predict_formats.write_records(results, handle, output_format)
    fs.commit(tmp, output_path)
  except BaseException:
    fs.remove(tmp)
    raise
  return len(results)


def _predict_in_chunks(predictor: RecordPredictor, model: Any, records: Sequence[dict], *,
                       chunk: int, log_every_s: float, log) -> list[dict]:
  results: list[dict] = []
  start = last = time.time()
  for i in range(0, len(records), chunk):
    results += predictor.predict(model, records[i:i + chunk])
    done, now = len(results), time.time()
    if now - last >= log_every_s and done < len(records):
      last = now
      rate = done / max(now - start, 1e-9)
      log(f"predict: {done}/{len(records)} records, {rate:.1f} records/s, ETA "
          f"{(len(records) - done) / max(rate, 1e-9):.0f}s")
  return results


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
  def probs(params, batch):
    logits = module.apply({"params": params}, batch["input_ids"], batch["token_type_ids"],
                          batch["attention_mask"], deterministic=True)
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
    inputs = {k: features[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    probs = batched_predict.predict_in_batches(self._probs, self.params, inputs,
                                               self.batch_size)
    if probs is None:
      probs = np.zeros((0, self.max_seq_length, len(self.labels)))
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


def predict_records(model: str | NerPredictor, records: Sequence[dict]) -> list[dict]:
  """Records with "text" -> records with "entities" added."""
  entities = tag_texts(model, [r["text"] for r in records])
  return [{**r, "entities": e} for r, e in zip(records, entities)]


class RecordPredictor(NamedTuple):
  """A task's raw-input prediction: the model loaded once, then records in chunks."""
  load: Callable[[str], Any]
  predict: Callable[[Any, Sequence[dict]], list[dict]]


# Tasks with raw-input prediction: records with "text" -> records with predictions added.
RECORD_PREDICTORS: dict[str, RecordPredictor] = {
    "ner": RecordPredictor(load=NerPredictor, predict=predict_records)}
