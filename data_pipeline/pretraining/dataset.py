"""The pre-training input pipeline: MLM + NSP batches as tf.data, streaming and resumable.

The iterator's state is the number of batches consumed: `set_state` rebuilds the
deterministic pipeline and skips (Python stages cannot be checkpointed by TF).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import ml_collections
import numpy as np

from data_pipeline._tf import tf
from data_pipeline.corpora import CorpusError, ReadStats, check_on_error
from data_pipeline.pretraining import masking, sources
from data_pipeline.pretraining.instances import InstanceMaker, flatten_instances
from data_pipeline.pretraining.static_examples import parse_examples
from data_pipeline.tokenization import load_tokenizer

CORPUS_FORMATS = ("text_doc_per_line", "text_bert", "pubmed_xml", "pmc")
FILE_FORMATS = CORPUS_FORMATS + ("tfrecord",)
STATE_VERSION = 1


def default_config() -> ml_collections.ConfigDict:
  """Pipeline settings (BERT/BioBERT defaults where they exist).

  In "tfrecord" mode the examples are fixed already: only train_files, eval_files,
  max_seq_length, max_predictions_per_seq (the parsing spec), batch_size, seed,
  shuffle_buffer, repeat and cycle_length apply.
  """
  c = ml_collections.ConfigDict()
  c.train_files = ""  # glob, comma-separated globs, or a list of paths
  c.eval_files = ""  # optional separate eval corpus; "" = hold-out of train_files
  c.file_format = "text_doc_per_line"  # one of FILE_FORMATS
  c.vocab_path = ""  # WordPiece vocab for data_pipeline.tokenization.load_tokenizer
  c.lowercase = False  # BioBERT uses the cased vocabulary
  c.max_seq_length = 128  # [CLS] A [SEP] B [SEP] incl.; BioBERT: 128, then 512
  c.max_predictions_per_seq = 20  # MLM positions per example (BERT: 20 at 128, 80 at 512)
  c.masked_lm_prob = 0.15
  c.short_seq_prob = 0.1  # share of documents with a random shorter target length
  c.whole_word_masking = False  # mask all pieces of a word together
  c.dupe_factor = 10  # static mode only: passes written by static_examples.py
  c.batch_size = 32  # PER-PROCESS batch (= global batch // process_count)
  c.seed = 12345  # decides file/document/example order, NSP pairs and masks
  c.shuffle_buffer = 10000  # examples; documents are shuffled in a buffer 1/10 of it
  c.doc_pool_size = 1000  # documents from which random NSP segments are drawn
  c.nsp_balance = True  # keep random-next at 50% (BERT's algorithm gives ~60%)
  c.repeat = True  # endless epochs (training); False = one pass
  c.on_error = "skip"  # "raise" | "skip" (counted, logged); see data_pipeline.corpora
  c.holdout_every = 100  # crc32(doc_id) % holdout_every == 0 -> eval only; 0 = none
  c.block_docs = 64  # documents per tokenizer call
  c.cycle_length = 8  # files read concurrently
  c.num_threads = 0  # tf.data private threadpool size; 0 = TF default (all cores)
  # > 1: the dynamic pipeline runs in this many worker processes, each a virtual host
  # (workers.py): the Python stages then use that many cores. Another value is another
  # batch sequence (part of the fingerprint); 1 = in this process.
  c.num_workers = 1
  return c


def _load_tokenizer(config):
  return load_tokenizer(config.vocab_path, lowercase=config.lowercase)


def validate_config(config) -> None:
  if config.file_format not in FILE_FORMATS:
    raise ValueError(f"config.file_format must be one of {FILE_FORMATS}, "
                     f"got {config.file_format!r}")
  check_on_error(config.on_error)
  if config.max_seq_length < 5:
    raise ValueError(f"config.max_seq_length={config.max_seq_length} is too small")
  if not 0.0 < config.masked_lm_prob < 1.0:
    raise ValueError(f"config.masked_lm_prob={config.masked_lm_prob} not in (0, 1)")
  workers = config.get("num_workers", 1)
  if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
    raise ValueError(f"config.num_workers={workers!r} must be an integer >= 1")


def _options(config) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  if config.num_threads:
    options.threading.private_threadpool_size = config.num_threads
    options.threading.max_intra_op_parallelism = 1
  return options


def _instance_dataset(config, files, doc_shard, *, holdout: bool, repeat: bool, tokenizer,
                      seed_key: int, stats: ReadStats | None) -> tf.data.Dataset:
  """Unpadded, unmasked NSP instances of this host's documents."""
  documents = sources.document_dataset(
      files, file_format=config.file_format, on_error=config.on_error,
      doc_shard=doc_shard, holdout_every=config.holdout_every, want_holdout=holdout,
      shuffle_files=not holdout, repeat=repeat, seed=config.seed,
      cycle_length=config.cycle_length, stats=stats)
  if not holdout:
    documents = documents.shuffle(max(1, config.shuffle_buffer // 10), seed=config.seed)
  blocks = sources.tokenized_block_dataset(documents, tokenizer, config.block_docs)

  maker = InstanceMaker(config.max_seq_length, config.short_seq_prob,
                        [config.seed, seed_key], tokenizer.cls_id, tokenizer.sep_id,
                        pool_size=max(config.doc_pool_size, config.block_docs),
                        nsp_balance=config.nsp_balance)

  def make_block_instances(block_index, doc_splits, sentence_splits, ids, word_start):
    if block_index == 0:  # a new iteration of the dataset starts the same way
      maker.reset()
    block = {"doc_splits": doc_splits, "sentence_splits": sentence_splits, "ids": ids,
             "word_start": word_start}
    flat = flatten_instances(maker.block_instances(sources.unpack_block(block)),
                             tokenizer.cls_id, tokenizer.sep_id)
    return (flat["tokens"], flat["segment_ids"], flat["word_flag"], flat["splits"],
            flat["next_sentence_labels"])

  def to_instances(block_index, block):
    tokens, segments, word_flag, splits, labels = tf.numpy_function(
        make_block_instances,
        [block_index, block["doc_splits"], block["sentence_splits"], block["ids"],
         block["word_start"]],
        [tf.int32, tf.int32, tf.int8, tf.int64, tf.int32], stateful=True)
    splits = tf.ensure_shape(splits, [None])
    ragged = lambda values: tf.RaggedTensor.from_row_splits(  # noqa: E731
        tf.ensure_shape(values, [None]), splits, validate=False)
    return tf.data.Dataset.from_tensor_slices({
        "tokens": ragged(tokens), "segment_ids": ragged(segments),
        "word_flag": ragged(word_flag),
        "next_sentence_label": tf.ensure_shape(labels, [None])})

  # Sequential (flat_map): the maker's pool and random stream follow the block order.
  return blocks.enumerate().flat_map(to_instances)


def corpus_batches(config, process_index: int = 0, process_count: int = 1, *,
                   batch_size: int, drop_remainder: bool = True, holdout: bool = False,
                   tokenizer=None, for_static: bool = False, skip_examples: int = 0,
                   stats: ReadStats | None = None) -> tf.data.Dataset:
  """Masked batches built from a corpus (every format but "tfrecord").

  `skip_examples` must be a multiple of `batch_size` for the batches after it to equal
  those of an uninterrupted run (masks are seeded by each batch's first example index).
  """
  validate_config(config)
  if config.file_format not in CORPUS_FORMATS:
    raise ValueError(f"corpus_batches needs a corpus format, got {config.file_format!r}")
  tokenizer = tokenizer or _load_tokenizer(config)
  use_eval_files = holdout and bool(config.eval_files)
  files = sources.expand_files(config.eval_files if use_eval_files else config.train_files)
  files, shard_index, shard_count = sources.shard_files(files, process_index, process_count)
  if use_eval_files:
    config = config.copy_and_resolve_references()
    config.holdout_every = 0  # a separate eval corpus is used whole
  repeat = config.repeat and not holdout and not for_static
  if not holdout:  # training or static examples: nothing to train on is an error
    sources.check_has_documents(
        files, file_format=config.file_format, on_error=config.on_error,
        doc_shard=(shard_index, shard_count), holdout_every=config.holdout_every,
        want_holdout=False, tokenizer=tokenizer,
        where=f"config.train_files (process {process_index} of {process_count})")
  seed_key = process_index * 2 + int(holdout)
  instances = _instance_dataset(config, files, (shard_index, shard_count), holdout=holdout,
                                repeat=repeat, tokenizer=tokenizer, seed_key=seed_key,
                                stats=stats)
  if not holdout:
    instances = instances.shuffle(config.shuffle_buffer, seed=config.seed + seed_key)
  instances = instances.enumerate().skip(skip_examples)
  instances = instances.map(lambda index, instance: dict(
      instance, index=index, length=tf.shape(instance["tokens"], out_type=tf.int32)[0]))
  length = config.max_seq_length
  batches = instances.padded_batch(
      batch_size, drop_remainder=drop_remainder,
      padded_shapes={"tokens": [length], "segment_ids": [length], "word_flag": [length],
                     "next_sentence_label": [], "index": [], "length": []},
      padding_values={"tokens": 0, "segment_ids": 0, "word_flag": tf.constant(-1, tf.int8),
                      "next_sentence_label": 0, "index": tf.constant(0, tf.int64),
                      "length": 0})
  mask_seed = tf.constant(config.seed, tf.int64) * 65536 + seed_key
  mask = lambda batch: masking.mask_batch(  # noqa: E731
      batch, tf.stack([mask_seed, batch["index"][0]]),
      max_predictions_per_seq=config.max_predictions_per_seq,
      masked_lm_prob=config.masked_lm_prob, whole_word_masking=config.whole_word_masking,
      vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id)
  batches = batches.map(mask, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return batches.with_options(_options(config))


def _tfrecord_batches(config, process_index: int, process_count: int,
                      skip_examples: int) -> tf.data.Dataset:
  """Batches of static examples; parsing is vectorised over each batch."""
  files = sources.expand_files(config.train_files)
  files, shard_index, shard_count = sources.shard_files(files, process_index, process_count)
  files = sources.local_copies(files)
  _check_has_records(files, shard_index, shard_count, process_index, process_count)
  files_ds = tf.data.Dataset.from_tensor_slices(tf.constant(files, tf.string))
  files_ds = files_ds.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
  if config.repeat:
    files_ds = files_ds.repeat()
  records = files_ds.interleave(
      tf.data.TFRecordDataset, cycle_length=max(1, min(config.cycle_length, len(files))),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if shard_count > 1:
    records = records.shard(shard_count, shard_index)
  records = records.shuffle(config.shuffle_buffer, seed=config.seed + process_index)
  records = records.skip(skip_examples).batch(config.batch_size, drop_remainder=True)
  return records.map(
      lambda r: parse_examples(r, config.max_seq_length, config.max_predictions_per_seq),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _check_has_records(files: list[str], shard_index: int, shard_count: int,
                       process_index: int, process_count: int) -> None:
  """Raises CorpusError when this process would get no TFRecord (a repeated empty
  dataset spins forever). Reads at most `shard_count` records."""
  try:
    found = sum(1 for _ in tf.data.TFRecordDataset(files).take(shard_count))
  except tf.errors.OpError as e:
    raise CorpusError(f"{', '.join(files[:5])}: cannot read TFRecords: {e.message}"
                      ) from None
  if found <= shard_index:
    raise CorpusError(
        f"{', '.join(files[:5])}: {len(files)} TFRecord file(s) hold {found} record(s), "
        f"none for process {process_index} of {process_count}; were the shards written "
        "from an empty corpus?")


def make_dataset(config, process_index: int = 0, process_count: int = 1, *,
                 skip_batches: int = 0, tokenizer=None,
                 stats: ReadStats | None = None) -> tf.data.Dataset:
  """Training batches for this process (see the module docstring).

  Args:
    config: default_config() with train_files, file_format, vocab_path set.
    process_index: this host (jax.process_index()).
    process_count: number of hosts (jax.process_count()); hosts read disjoint data.
    skip_batches: batches to skip (resume); prefer PretrainingIterator.set_state.
    tokenizer: optional tokenizer object (data_pipeline.tokenization contract); loaded
      from config.vocab_path when None.
    stats: optional ReadStats, filled by the readers as they finish files.
  """
  validate_config(config)
  skip_examples = skip_batches * config.batch_size
  if config.file_format == "tfrecord":
    batches = _tfrecord_batches(config, process_index, process_count, skip_examples)
  else:
    batches = corpus_batches(config, process_index, process_count,
                             batch_size=config.batch_size, tokenizer=tokenizer,
                             skip_examples=skip_examples, stats=stats)
  return batches.prefetch(tf.data.AUTOTUNE).with_options(_options(config))


def make_eval_dataset(config, process_index: int = 0, process_count: int = 1, *,
                      tokenizer=None, stats: ReadStats | None = None) -> tf.data.Dataset:
  """One finite, unshuffled pass over the held-out documents (or config.eval_files).

  Same batches every call (fixed masks), disjoint from training documents. The last
  partial batch is dropped so shapes stay fixed.
  """
  validate_config(config)
  if config.file_format == "tfrecord":
    if not config.eval_files:
      raise ValueError("file_format='tfrecord' has no document ids to hold out: "
                       "set config.eval_files")
    eval_config = config.copy_and_resolve_references()
    eval_config.train_files, eval_config.repeat = config.eval_files, False
    batches = _tfrecord_batches(eval_config, process_index, process_count, 0)
  else:
    batches = corpus_batches(config, process_index, process_count,
                             batch_size=config.batch_size, holdout=True,
                             tokenizer=tokenizer, stats=stats)
  return batches.prefetch(tf.data.AUTOTUNE)


def config_fingerprint(config) -> str:
  """Hash of the settings that decide the batch sequence (checked at resume)."""
  keys = ("train_files", "file_format", "vocab_path", "lowercase", "max_seq_length",
          "max_predictions_per_seq", "masked_lm_prob", "short_seq_prob",
          "whole_word_masking", "nsp_balance", "batch_size", "seed", "shuffle_buffer",
          "doc_pool_size", "holdout_every", "block_docs", "cycle_length")
  settings = {k: str(config.get(k)) for k in keys}
  if config.get("num_workers", 1) > 1:  # only then: states saved before the key stay valid
    settings["num_workers"] = str(config.num_workers)
  text = json.dumps(settings, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_state(state: dict[str, Any], process: tuple[int, int], fingerprint: str) -> None:
  """Raises ValueError unless `state` was saved by this pipeline on this process."""
  expected = {"version": STATE_VERSION, "process_index": process[0],
              "process_count": process[1], "config_fingerprint": fingerprint}
  for key, value in expected.items():
    if state.get(key) != value:
      raise ValueError(f"iterator state {key}={state.get(key)!r} does not match this "
                       f"pipeline ({value!r}); the batch sequence would differ")


class PretrainingIterator:
  """Iterator of numpy batches with a resumable, JSON-able position."""

  def __init__(self, config, process_index: int = 0, process_count: int = 1,
               tokenizer=None, stats: ReadStats | None = None):
    self._config = config
    self._process = (process_index, process_count)
    self._tokenizer = tokenizer
    self._stats = stats
    self._consumed = 0
    self._iterator = None  # built on first use, so set_state right away costs no rebuild
    # Taken once: get_state runs before every fetch (train.loop.InterruptibleBatches).
    self._fingerprint = config_fingerprint(config)

  def _build(self, skip_batches: int):
    dataset = make_dataset(self._config, *self._process, skip_batches=skip_batches,
                           tokenizer=self._tokenizer, stats=self._stats)
    return dataset.as_numpy_iterator()

  def __iter__(self) -> PretrainingIterator:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._iterator is None:
      self._iterator = self._build(self._consumed)
    batch = next(self._iterator)
    self._consumed += 1
    return batch

  def get_state(self) -> dict[str, Any]:
    return {"version": STATE_VERSION, "batches_consumed": self._consumed,
            "process_index": self._process[0], "process_count": self._process[1],
            "config_fingerprint": self._fingerprint}

  def set_state(self, state: dict[str, Any]) -> None:
    """Continues after the last batch consumed when `state` was taken."""
    check_state(state, self._process, self._fingerprint)
    self._consumed = int(state["batches_consumed"])
    self._iterator = None
