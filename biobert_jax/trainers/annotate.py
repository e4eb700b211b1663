"""Annotating literature at scale (library of experiments/annotate.py): one resumable
JSONL/PubTator output per input file, every local device, several models per pass.

A file that cannot be read, or whose reading ended early, is never marked finished: it is
listed under "failed" in the summary (trainers/annotate_outputs has the output rules; the
output directory is locked).
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import json
import pathlib
import queue
import re
import threading
import time
from typing import Any
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from biobert_jax import fs, locking, models, sharding
from biobert_jax.runtime import xla_options
from biobert_jax.metrics import ner as ner_metrics
from biobert_jax.trainers import annotate_outputs as outputs_lib
from biobert_jax.trainers import batched_predict
from biobert_jax.trainers import bioc_output
from biobert_jax.trainers import model_dir as model_dir_lib
from data_pipeline import annotate_features as features_lib
from data_pipeline import annotate_input

OUTPUT_FORMATS = {"jsonl": ".jsonl", "pubtator": ".pubtator", "bioc-xml": ".xml",
                  "bioc-json": ".json"}
_ONE_LINE = re.compile(r"[\t\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # str.splitlines' breaks
STATS_DIR = "_stats"


@dataclasses.dataclass
class Head:
  name: str
  labels: list[str]


class Tagger:
  """One model directory on the mesh: tokenizer, params and a jit'd forward for all heads."""

  def __init__(self, model_dir: str, mesh: jax.sharding.Mesh, dtype: str = "float32"):
    loaded = model_dir_lib.load_finetuned(model_dir)
    info, config = loaded.info, loaded.bert_config
    self.model_dir = loaded.model_dir
    compute = models.compute_dtype(dtype)
    if info.get("task") == "ner":
      name = info.get("corpus") or pathlib.Path(loaded.model_dir).parent.name or "ner"
      self.heads = [Head(name, list(info["labels"]))]
      module = models.BertForTokenClassification(config, len(self.heads[0].labels),
                                                 dtype=compute)
    elif info.get("task") == "multi_ner":
      self.heads = [Head(h["name"], list(h["labels"])) for h in info["heads"]]
      module = models.BertForMultiTokenClassification(
          config, tuple((h.name, len(h.labels)) for h in self.heads), dtype=compute)
    else:
      raise ValueError(f"{loaded.model_dir}/task.json: task {info.get('task')!r} cannot "
                       "annotate (expected 'ner' or 'multi_ner')")
    self.tokenizer = loaded.tokenizer
    self.max_seq_length = int(info["max_seq_length"])
    self.stride = int(info.get("doc_stride", self.max_seq_length // 2))
    self.continuation = features_lib.continuation_table(self.tokenizer)
    shardings = sharding.param_shardings(models.logical_axes(module), loaded.params, mesh)
    self.params = jax.device_put(loaded.params, shardings)
    self.batch_sharding = sharding.batch_sharding(mesh)
    self._forward = _forward_fn(module, self.heads[0].name)

  def windows(self, texts: Sequence[str]) -> features_lib.Windows:
    return features_lib.make_windows(self.tokenizer, texts, self.max_seq_length,
                                     self.stride, self.continuation)

  def predict(self, windows: features_lib.Windows, batch_size: int, bucket: int
              ) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """{head: (label ids per sentence's words, confidence per word)}."""
    features = features_lib.window_features(windows, self.max_seq_length,
                                            self.tokenizer.pad_id)
    outputs = batched_predict.predict_in_batches(self._forward, self.params, features,
                                                 batch_size, bucket=bucket,
                                                 put=self.batch_sharding)
    result = {h.name: ([np.zeros(len(w), np.int32) for w in windows.word_spans],
                       [np.zeros(len(w), np.float32) for w in windows.word_spans])
              for h in self.heads}
    for name, (tags, conf) in (outputs or {}).items():
      word_tags, word_conf = result[name]
      for r, (s, pos, words) in enumerate(zip(windows.sentence, windows.positions,
                                              windows.words)):
        word_tags[s][words] = tags[r, pos]
        word_conf[s][words] = conf[r, pos]
    return result


@functools.lru_cache(maxsize=16)
def _forward_fn(module: Any, single_head: str):
  """jit'd {head: (label id, its probability)} per position; shared by equal modules."""

  def forward(params, batch):
    out = module.apply({"params": params}, batch["input_ids"], batch["token_type_ids"],
                       batch["attention_mask"], deterministic=True)
    out = out if isinstance(out, dict) else {single_head: out}
    return {name: (jnp.argmax(logits, -1).astype(jnp.int32),
                   jnp.max(jax.nn.softmax(logits.astype(jnp.float32), -1), -1))
            for name, logits in out.items()}

  return jax.jit(forward, compiler_options=xla_options.inference_options() or None)


def sentence_entities(head: Head, tags: np.ndarray, conf: np.ndarray,
                      word_spans: np.ndarray, offset: int, text: str) -> list[dict]:
  """Entities of one sentence's word predictions, offsets into the document text."""
  if not tags.size or not np.any(tags != head.labels.index("O")):
    return []
  entities = []
  for entity_type, first, last in ner_metrics.get_entities([head.labels[t] for t in tags]):
    start, end = offset + int(word_spans[first, 0]), offset + int(word_spans[last, 1])
    entities.append({"start": start, "end": end, "text": text[start:end],
                     "type": entity_type or head.name,
                     "score": round(float(np.mean(conf[first:last + 1])), 4)})
  return entities


def format_document(doc: annotate_input.TextDocument, entities: list[dict],
                    output_format: str) -> str:
  if output_format == "jsonl":
    return json.dumps({"id": doc.doc_id, "text": doc.text, "entities": entities},
                      ensure_ascii=False) + "\n"
  # PubTator offsets count into title + one character + abstract, which is `text`.
  # Newlines (possible in text inputs) become spaces so the offsets stay valid.
  # Tabs too, so no text ends a field; ids are percent-encoded (annotate_outputs).
  text = _ONE_LINE.sub(" ", doc.text)
  doc_id = outputs_lib.pubtator_id(doc.doc_id)
  title, abstract = (text[:doc.title_end], text[doc.title_end + 1:]) if doc.title_end \
      else (text, "")
  lines = [f"{doc_id}|t|{title}\n", f"{doc_id}|a|{abstract}\n"]
  lines += [f"{doc_id}\t{e['start']}\t{e['end']}\t{text[e['start']:e['end']]}\t"
            f"{outputs_lib.pubtator_id(e['type'])}\t-\n" for e in entities]
  return "".join(lines) + "\n"


@dataclasses.dataclass
class _Block:
  path: str
  docs: list[annotate_input.TextDocument]
  sentences: features_lib.SentenceBlock
  windows: list[features_lib.Windows]
  last: bool                       # the file's final block (stats complete)
  stream: annotate_input.DocumentStream | None
  failed: str = ""                 # why the file could not be read at all (then last)


def _prepared_blocks(files: Sequence[str], taggers: Sequence[Tagger], block_docs: int,
                     input_format: str) -> Iterator[_Block]:
  """Blocks of documents with sentences and every tagger's windows (reader thread)."""
  for path in files:
    try:
      stream = annotate_input.DocumentStream(path, input_format)
    except (ValueError, OSError) as e:  # format detection: not gzip, not a known XML root
      yield _Block(path, [], features_lib.split_block([]), [], True, None, str(e))
      continue
    docs: list[annotate_input.TextDocument] = []
    iterator = iter(stream)
    done = False
    while not done:
      try:
        docs.append(next(iterator))
      except StopIteration:
        done = True
      except Exception as e:  # one file never stops the job
        yield _Block(path, [], features_lib.split_block([]), [], True, stream,
                     f"{path}: reading failed after {stream.stats.documents} documents "
                     f"({type(e).__name__}: {e})")
        break
      if len(docs) == block_docs or done:  # an empty final block still closes the file
        sentences = features_lib.split_block(docs)
        windows = [t.windows(sentences.texts) for t in taggers]
        yield _Block(path, docs, sentences, windows, done, stream)
        docs = []


def _background(iterator: Iterator[Any], depth: int) -> Iterator[Any]:
  """Runs `iterator` on a thread, `depth` items ahead; re-raises its exception here."""
  items: queue.Queue = queue.Queue(maxsize=depth)
  end = object()

  def run():
    try:
      for item in iterator:
        items.put(item)
      items.put(end)
    except BaseException as e:
      items.put(e)

  threading.Thread(target=run, daemon=True).start()
  while True:
    item = items.get()
    if item is end:
      return
    if isinstance(item, BaseException):
      raise item
    yield item


def expand_inputs(patterns: str | Sequence[str]) -> list[str]:
  """Sorted files from a glob, comma-separated globs, or a list; a pattern must match."""
  patterns = patterns.split(",") if isinstance(patterns, str) else list(patterns)
  files: list[str] = []
  for pattern in patterns:
    matched = sorted(p for p in fs.glob(pattern.strip()) if fs.isfile(p))
    if not matched:
      raise FileNotFoundError(f"no file matches --input pattern {pattern.strip()!r}")
    files.extend(matched)
  return sorted(set(files))


def _output_names(files: Sequence[str], ext: str) -> dict[str, str]:
  names: dict[str, str] = {}
  owner: dict[str, str] = {}
  for path in files:
    name = annotate_input.output_stem(path) + ext
    if name in owner:
      raise ValueError(f"inputs {owner[name]} and {path} would both write {name}; annotate "
                       "them into separate --output directories")
    names[path], owner[name] = name, path
  return names


def _write_json(path: pathlib.Path, value: Any) -> None:
  tmp = path.with_name(outputs_lib.temp_name(path.name))
  with outputs_lib.open_new(tmp) as f:
    f.write(json.dumps(value, indent=1, sort_keys=True) + "\n")
  fs.commit(tmp, path)


def annotate(model_dirs: Sequence[str], inputs: str | Sequence[str], output_dir: str, *,
             output_format: str = "jsonl", input_format: str = "auto", batch_size: int = 128,
             bucket_length: int = 32, block_docs: int = 1024, dtype: str = "float32",
             mesh_shape: dict | None = None, log_every_s: float = 30.0,
             process_index: int | None = None, process_count: int | None = None) -> dict:
  """Annotates every input file this process owns; returns (and writes) the summary.

  Options, inputs and the output directory are checked before any model loads
  (AnnotateOptionError, one line); the directory is locked for the run
  (locking.LockHeld when another run writes there). A file that cannot be read, or whose
  reading ended early, is not marked finished: it is listed under `failed` in the
  summary (redone by the next run), and the run goes on with the other files.
  """
  outputs_lib.validate_options(
      batch_size=batch_size, bucket_length=bucket_length, block_docs=block_docs,
      log_every_s=log_every_s, output_format=output_format, formats=OUTPUT_FORMATS,
      input_format=input_format, input_formats=annotate_input.FORMATS, dtype=dtype)
  if not model_dirs:
    raise outputs_lib.AnnotateOptionError("no model directory given (--models)")
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  all_files = expand_inputs(inputs)
  names = _output_names(all_files, OUTPUT_FORMATS[output_format])
  files = all_files[pi::pc]
  out = fs.path(output_dir)
  outputs_lib.prepare_output(out, [names[p] for p in files], STATS_DIR)
  with (locking.hold_for_job(out) if process_index is None
        else locking.hold(out, primary=pi == 0)):
    outputs_lib.remove_partials(out, [names[p] for p in files], STATS_DIR)
    return _annotate(model_dirs, files, names, out, output_format=output_format,
                     input_format=input_format, batch_size=batch_size,
                     bucket_length=bucket_length, block_docs=block_docs, dtype=dtype,
                     mesh_shape=mesh_shape, log_every_s=log_every_s, pi=pi, pc=pc)


def _annotate(model_dirs: Sequence[str], files: list[str], names: dict[str, str],
              out: pathlib.Path, *, output_format: str, input_format: str, batch_size: int,
              bucket_length: int, block_docs: int, dtype: str, mesh_shape: dict | None,
              log_every_s: float, pi: int, pc: int) -> dict:
  mesh = sharding.make_mesh(mesh_shape or {"data": -1, "fsdp": 1, "tensor": 1},
                            devices=jax.local_devices())
  rows = batch_size + (-batch_size) % sharding.batch_shard_count(mesh)
  taggers = [Tagger(m, mesh, dtype) for m in model_dirs]
  model_ids = [t.model_dir for t in taggers]
  summary = collections.Counter()
  per_type: collections.Counter = collections.Counter()
  file_reports: dict[str, dict] = {}
  errors: list[str] = []
  todo = []
  failed: dict[str, str] = {}
  for path in files:
    stats_path = out / STATS_DIR / (names[path] + ".json")
    if (out / names[path]).exists():
      report = json.loads(stats_path.read_text()) if stats_path.exists() else {}
      stale = outputs_lib.stale_reason(report, path)
      if stale:
        print(f"annotate: redoing {out / names[path]}: {stale}", flush=True)
        fs.remove(out / names[path])
        todo.append(path)
        continue
      if report.get("models", model_ids) != model_ids:
        print(f"annotate: WARNING {out / names[path]} was written by models "
              f"{report['models']}, not {model_ids}; kept (delete it to redo)", flush=True)
      file_reports[names[path]] = dict(report, status="existing")
    else:
      todo.append(path)
  todo_bytes = sum(fs.getsize(p) for p in todo)
  t0 = last_log = time.time()
  done_bytes, tokens, docs_this_run = 0, 0, 0
  handle, counts, bioc_writer = None, collections.Counter(), None
  for block in _background(_prepared_blocks(todo, taggers, block_docs, input_format), 2):
    name = names[block.path]
    partial = out / outputs_lib.temp_name(name)
    if block.failed:
      if handle is not None:
        handle.close()
        handle = None
      fs.remove(partial)
      failed[name] = block.failed
      file_reports[name] = {"input": block.path, "status": "failed", "reason": block.failed,
                            **(dataclasses.asdict(block.stream.stats) if block.stream
                               else {})}
      print(f"annotate: ERROR {block.failed}; skipped, the run goes on", flush=True)
      continue
    if handle is None:
      fingerprint = outputs_lib.fingerprint(block.path)  # before reading: a change is seen
      handle = outputs_lib.open_new(partial)
      counts = collections.Counter()
      bioc_writer = (bioc_output.BiocWriter(handle, output_format)
                     if output_format in bioc_output.FORMATS else None)
    entities: list[list[dict]] = [[] for _ in block.docs]
    for tagger, windows in zip(taggers, block.windows):
      tokens += windows.num_tokens
      predictions = tagger.predict(windows, rows, bucket_length)
      for head in tagger.heads:
        tags, conf = predictions[head.name]
        for s, (d, (offset, _)) in enumerate(zip(block.sentences.doc_of_sentence,
                                                 block.sentences.spans)):
          entities[d].extend(sentence_entities(head, tags[s], conf[s],
                                               windows.word_spans[s], int(offset),
                                               block.docs[d].text))
    for doc, found in zip(block.docs, entities):
      found.sort(key=lambda e: (e["start"], e["end"], e["type"]))
      counts.update(e["type"] for e in found)
      if bioc_writer is not None:
        bioc_writer.write(bioc_output.to_bioc(doc.doc_id, doc.text, doc.segments,
                                              doc.title_end, found, doc.source))
      else:
        handle.write(format_document(doc, found, output_format))
    docs_this_run += len(block.docs)
    if block.last:
      if bioc_writer is not None:
        bioc_writer.close()
      handle.close()
      handle = None
      report = {"input": block.path, "models": model_ids,
                "entities": dict(sorted(counts.items())), **fingerprint,
                **dataclasses.asdict(block.stream.stats)}
      if fingerprint != outputs_lib.fingerprint(block.path):
        report["incomplete"] = f"{block.path} changed while it was read"
      if report["incomplete"]:  # never renamed: the next run redoes the whole file
        fs.remove(partial)
        failed[name] = report["incomplete"]
        file_reports[name] = dict(report, status="incomplete")
        print(f"annotate: ERROR {report['incomplete']} ({report['documents']} documents "
              f"read); {name} not written, redone by the next run", flush=True)
      else:
        _write_json(out / STATS_DIR / (name + ".json"), report)
        fs.commit(partial, out / name)
        file_reports[name] = dict(report, status="written")
      done_bytes += block.stream.size
    now = time.time()
    if now - last_log >= log_every_s or block.last:
      last_log = now
      elapsed = max(now - t0, 1e-9)
      position = done_bytes + (0 if block.last else block.stream.bytes_read)
      eta = (todo_bytes - position) / max(position / elapsed, 1e-9)
      print(f"annotate: {docs_this_run} documents, {docs_this_run / elapsed:.1f} docs/s, "
            f"{tokens / elapsed:.0f} tokens/s, files {len(file_reports)}/{len(files)}, "
            f"ETA {eta:.0f}s", flush=True)
  for report in file_reports.values():
    if report["status"] not in ("written", "existing"):
      continue  # listed under "failed"; its documents are in no output
    summary.update({k: report.get(k, 0) for k in ("documents", "empty", "malformed",
                                                  "deleted")})
    per_type.update(report.get("entities", {}))
    errors.extend(report.get("errors", [])[:max(0, 100 - len(errors))])
  elapsed = time.time() - t0
  result = {
      "models": model_ids, "output_format": output_format,
      "documents": summary["documents"], "documents_empty": summary["empty"],
      "skipped_malformed": summary["malformed"], "deleted_citations": summary["deleted"],
      "entities": dict(sorted(per_type.items())), "entities_total": sum(per_type.values()),
      "files": dict(sorted(file_reports.items())),
      "files_written": sum(r["status"] == "written" for r in file_reports.values()),
      "files_existing": sum(r["status"] == "existing" for r in file_reports.values()),
      "errors": errors, "failed": dict(sorted(failed.items())),
      "book_articles": sum(r.get("book_articles", 0) for r in file_reports.values()
                           if r["status"] in ("written", "existing")),
      "skipped_elements": dict(sum((collections.Counter(r.get("skipped_elements", {}))
                                    for r in file_reports.values()
                                    if r["status"] in ("written", "existing")),
                                   collections.Counter())),
      "process_index": pi, "process_count": pc,
      "devices": len(mesh.devices.flat), "seconds": round(elapsed, 3),
      "documents_this_run": docs_this_run,
      "documents_per_second": round(docs_this_run / max(elapsed, 1e-9), 2),
      "tokens_per_second": round(tokens / max(elapsed, 1e-9), 1)}
  for report in result["files"].values():
    report.pop("deleted_ids", None)  # in _stats/ per file; the summary stays small
    report.pop("models", None)
  summary_name = "summary.json" if pc == 1 else f"summary.{pi}-of-{pc}.json"
  _write_json(out / summary_name, result)
  return result
