"""Documents for pre-training as tf.data: host sharding (by file, else by document index),
reading, hold-out by crc32 of the document id, tokenisation.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from data_pipeline._tf import tf
from data_pipeline.corpora import CorpusError, ReadStats, read_documents
from data_pipeline.pretraining.instances import TokenizedDocument
from biobert_jax import fs

# A chunk of documents from one file: ids [k], all their sentences [n], sentences per
# document [k]. Python hands documents to TF in chunks because each from_generator step
# costs a Python call and tensor conversions (one document per step was 10x slower).
_CHUNK_SIGNATURE = (tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string),
                    tf.TensorSpec([None], tf.int64))
_READ_CHUNK_DOCS = 256


def expand_files(train_files: str | Sequence[str]) -> list[str]:
  """Sorted file list from a glob, a comma-separated list of globs, or a list."""
  patterns = train_files.split(",") if isinstance(train_files, str) else list(train_files)
  files: list[str] = []
  for pattern in patterns:
    matched = fs.glob(pattern.strip())
    if not matched:
      raise FileNotFoundError(f"no file matches {pattern!r} (config.train_files)")
    files.extend(matched)
  return files


def local_copies(files: list[str]) -> list[str]:
  """`files` with each object-store URL replaced by a local copy (downloaded once per
  process into a temporary directory removed at exit): TensorFlow's own gs:// client, which
  tf.data would use, ignores STORAGE_EMULATOR_HOST and other fsspec settings. Called on
  this host's share only."""
  if not any(fs.is_remote(f) for f in files):
    return files
  cache = tempfile.mkdtemp(prefix="biobert-shards-")
  atexit.register(shutil.rmtree, cache, True)
  out = []
  for i, f in enumerate(files):
    if fs.is_remote(f):
      target = os.path.join(cache, f"{i:05d}-{fs.basename(f)}")
      fs.copy(f, target)
      f = target
    out.append(f)
  return out


def shard_files(files: list[str], process_index: int,
                process_count: int) -> tuple[list[str], int, int]:
  """(this host's files, document shard index, document shard count)."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  if len(files) >= process_count:
    return files[process_index::process_count], 0, 1
  return files, process_index, process_count


def in_holdout(doc_id: str, holdout_every: int) -> bool:
  return holdout_every > 0 and zlib.crc32(doc_id.encode("utf-8")) % holdout_every == 0


class _StatsSink:
  """Collects the ReadStats of reader generators that run on tf.data threads."""

  def __init__(self, stats: ReadStats | None):
    self._stats = stats
    self._lock = threading.Lock()

  def add(self, stats: ReadStats) -> None:
    if self._stats is not None:
      with self._lock:
        self._stats.merge(stats)


def document_dataset(files: list[str], *, file_format: str, on_error: str,
                     doc_shard: tuple[int, int], holdout_every: int, want_holdout: bool,
                     shuffle_files: bool, repeat: bool, seed: int, cycle_length: int,
                     stats: ReadStats | None = None) -> tf.data.Dataset:
  """Dataset of (doc_id, sentences[S]) over `files`, interleaved deterministically."""
  sink = _StatsSink(stats)
  shard_index, shard_count = doc_shard

  def read_file(path: bytes) -> Iterator[tuple[list[str], list[str], list[int]]]:
    file_stats = ReadStats()
    ids: list[str] = []
    sentences: list[str] = []
    counts: list[int] = []
    try:
      for index, doc in enumerate(read_documents(path.decode(), file_format, on_error,
                                                 file_stats)):
        if index % shard_count != shard_index:
          continue
        if in_holdout(doc.doc_id, holdout_every) != want_holdout:
          continue
        ids.append(doc.doc_id)
        sentences.extend(doc.sentences)
        counts.append(len(doc.sentences))
        if len(ids) == _READ_CHUNK_DOCS:
          yield ids, sentences, counts
          ids, sentences, counts = [], [], []
      if ids:
        yield ids, sentences, counts
    finally:
      sink.add(file_stats)

  def documents_of_chunk(ids, sentences, counts):
    ragged = tf.RaggedTensor.from_row_lengths(sentences, counts)
    return tf.data.Dataset.from_tensor_slices((ids, ragged))

  files_ds = tf.data.Dataset.from_tensor_slices(tf.constant(files, tf.string))
  if shuffle_files:
    files_ds = files_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    files_ds = files_ds.repeat()
  chunks = files_ds.interleave(
      lambda path: tf.data.Dataset.from_generator(
          read_file, args=(path,), output_signature=_CHUNK_SIGNATURE),
      cycle_length=max(1, min(cycle_length, len(files))), block_length=1,
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return chunks.flat_map(documents_of_chunk)


def check_has_documents(files: list[str], *, file_format: str, on_error: str,
                        doc_shard: tuple[int, int], holdout_every: int, want_holdout: bool,
                        tokenizer, where: str) -> None:
  """Raises CorpusError unless some document of this shard yields at least one token.

  The training pipeline repeats its files forever, so a shard without a usable document
  would make tf.data spin on empty passes (at 100% CPU, deaf to SIGTERM). Readers and
  filters are deterministic, so one usable document found now is found in every pass.
  The scan stops at the first usable document: milliseconds on a real corpus, one read
  of the files when they hold nothing usable.
  """
  shard_index, shard_count = doc_shard
  stats = ReadStats()
  filtered = "not in the hold-out" if want_holdout else "held out for evaluation"
  counts = {"for other processes": 0, filtered: 0, "without tokens": 0}
  for path in files:
    for index, doc in enumerate(read_documents(path, file_format, on_error, stats)):
      if index % shard_count != shard_index:
        counts["for other processes"] += 1
      elif in_holdout(doc.doc_id, holdout_every) != want_holdout:
        counts[filtered] += 1
      elif any(len(ids) for ids in tokenizer.encode(list(doc.sentences))):
        return
      else:
        counts["without tokens"] += 1
  shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
  skipped = (f"{stats.skipped_no_text} records without text, {stats.skipped_deleted} "
             f"deleted, {stats.skipped_errors} malformed (skipped)")
  filters = ", ".join(f"{v} {k}" for k, v in counts.items())
  first_error = f"; first error: {stats.errors[0]}" if stats.errors else ""
  raise CorpusError(
      f"{where}: no usable document in {len(files)} file(s) ({shown}) as "
      f"file_format={file_format!r}: {stats.documents} documents read ({filters}); "
      f"{skipped}{first_error}. Check train_files, file_format and holdout_every.")


def tokenize_block(tokenizer, doc_ids: tf.Tensor,
                   sentences: tf.RaggedTensor) -> dict[str, tf.Tensor]:
  """Tokenizes a block of documents; returns flat arrays plus their row splits."""
  pieces = tokenizer.tokenize_tf(sentences.flat_values)  # [N, words, pieces]
  pieces_per_sentence = pieces.merge_dims(1, 2)  # [N, T]
  per_word = pieces.values  # [words, pieces]
  first_piece = tf.ragged.range(per_word.row_lengths()) == 0
  word_start = pieces.with_values(first_piece).merge_dims(1, 2)
  return {
      "doc_ids": doc_ids,
      "doc_splits": sentences.row_splits,
      "sentence_splits": pieces_per_sentence.row_splits,
      "ids": tf.cast(pieces_per_sentence.flat_values, tf.int32),
      "word_start": word_start.flat_values,
  }


def tokenized_block_dataset(documents: tf.data.Dataset, tokenizer,
                            block_docs: int) -> tf.data.Dataset:
  """Blocks of `block_docs` tokenized documents (one tokenizer call per block)."""
  blocks = documents.ragged_batch(block_docs)
  return blocks.map(lambda ids, sentences: tokenize_block(tokenizer, ids, sentences),
                    num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True).prefetch(tf.data.AUTOTUNE)


def unpack_block(block: dict[str, np.ndarray]) -> Iterator[TokenizedDocument]:
  """The tokenized documents of one numpy block, empty sentences dropped."""
  doc_splits = block["doc_splits"]
  sentence_splits = block["sentence_splits"]
  ids = block["ids"]
  word_start = block["word_start"]
  for d in range(len(doc_splits) - 1):
    first, last = doc_splits[d], doc_splits[d + 1]
    splits = sentence_splits[first:last + 1]
    lo, hi = splits[0], splits[-1]
    # Drop empty sentences: keep boundaries that advance.
    keep = np.concatenate([[True], splits[1:] > splits[:-1]])
    yield TokenizedDocument(ids[lo:hi], word_start[lo:hi], (splits[keep] - lo))
