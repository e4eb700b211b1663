"""Segment pairs with NSP labels, as original BERT's `create_instances_from_document`, with
random segments drawn from a rolling pool of recent documents.
"""
from __future__ import annotations

import collections
from typing import NamedTuple
from collections.abc import Iterable, Iterator, Sequence

import numpy as np


class TokenizedDocument(NamedTuple):
  ids: np.ndarray  # int32 [pieces]
  word_start: np.ndarray  # bool [pieces]
  bounds: np.ndarray  # int64 [sentences + 1]: sentence s is pieces bounds[s]:bounds[s+1]

  @property
  def num_sentences(self) -> int:
    return len(self.bounds) - 1


def make_document(sentences: Sequence[tuple[Sequence[int], Sequence[bool]]]
                  ) -> TokenizedDocument:
  """A TokenizedDocument from per-sentence (ids, word_start); empty sentences dropped."""
  sentences = [(ids, starts) for ids, starts in sentences if len(ids)]
  lengths = [len(ids) for ids, _ in sentences]
  bounds = np.zeros(len(sentences) + 1, np.int64)
  np.cumsum(lengths, out=bounds[1:])
  if not sentences:
    return TokenizedDocument(np.zeros(0, np.int32), np.zeros(0, bool), bounds)
  return TokenizedDocument(np.concatenate([np.asarray(i, np.int32) for i, _ in sentences]),
                           np.concatenate([np.asarray(s, bool) for _, s in sentences]),
                           bounds)


def truncate_seq_pair(len_a: int, len_b: int, max_num_tokens: int,
                      rng: np.random.Generator) -> tuple[int, int, int, int]:
  """BERT `truncate_seq_pair` on lengths: trims the longer segment, front or back at random.

  Returns (a pieces cut at the front, at the back, b front, b back).
  """
  cuts = [0, 0, 0, 0]
  excess = len_a + len_b - max_num_tokens
  if excess <= 0:
    return 0, 0, 0, 0
  coins = rng.random(excess)
  for coin in coins:
    if len_a > len_b:
      cuts[0 if coin < 0.5 else 1] += 1
      len_a -= 1
    else:
      cuts[2 if coin < 0.5 else 3] += 1
      len_b -= 1
  return cuts[0], cuts[1], cuts[2], cuts[3]


class InstanceSpec(NamedTuple):
  """One pair as slices: A = a_doc pieces [a_lo, a_hi), B = b_doc pieces [b_lo, b_hi)."""
  a_doc: TokenizedDocument
  a_lo: int
  a_hi: int
  b_doc: TokenizedDocument
  b_lo: int
  b_hi: int
  is_random_next: bool


def flatten_instances(specs: Sequence[InstanceSpec], cls_id: int,
                      sep_id: int) -> dict[str, np.ndarray]:
  """Instances concatenated flat, with `splits` [n + 1] marking where each one starts.

  `word_flag` is 1 on the first piece of a word, 0 on a continuation piece and -1 on
  [CLS]/[SEP]; each segment's first piece counts as a word start (it may be a "##"
  piece after front truncation). `segment_ids` 0 for [CLS] A [SEP], 1 for B [SEP].
  """
  cls = np.asarray([cls_id], np.int32)
  sep = np.asarray([sep_id], np.int32)
  special = np.asarray([-1], np.int8)
  tokens, flags, seg_lengths = [], [], []
  for spec in specs:
    tokens += [cls, spec.a_doc.ids[spec.a_lo:spec.a_hi], sep,
               spec.b_doc.ids[spec.b_lo:spec.b_hi], sep]
    flags += [special, spec.a_doc.word_start[spec.a_lo:spec.a_hi].astype(np.int8), special,
              spec.b_doc.word_start[spec.b_lo:spec.b_hi].astype(np.int8), special]
    seg_lengths += [spec.a_hi - spec.a_lo + 2, spec.b_hi - spec.b_lo + 1]
  lengths = np.asarray(seg_lengths, np.int64).reshape(-1, 2)
  splits = np.zeros(len(specs) + 1, np.int64)
  np.cumsum(lengths.sum(axis=1), out=splits[1:])
  word_flag = np.concatenate(flags) if flags else np.zeros(0, np.int8)
  if len(specs):
    word_flag[splits[:-1] + 1] = 1  # first piece of A
    word_flag[splits[:-1] + lengths[:, 0]] = 1  # first piece of B
  segment_ids = np.repeat(np.tile(np.asarray([0, 1], np.int32), len(specs)),
                          lengths.reshape(-1))
  return {
      "tokens": np.concatenate(tokens) if tokens else np.zeros(0, np.int32),
      "segment_ids": segment_ids,
      "word_flag": word_flag,
      "splits": splits,
      "next_sentence_labels": np.asarray([spec.is_random_next for spec in specs], np.int32),
  }


def make_instance(spec: InstanceSpec, cls_id: int, sep_id: int) -> dict[str, np.ndarray]:
  """One unpadded instance (tokens, segment_ids, word_flag, next_sentence_label)."""
  flat = flatten_instances([spec], cls_id, sep_id)
  return {"tokens": flat["tokens"], "segment_ids": flat["segment_ids"],
          "word_flag": flat["word_flag"],
          "next_sentence_label": flat["next_sentence_labels"][0]}


class NspBalancer:
  """Keeps the share of random-next pairs at 50%.

  BERT always takes a random next segment for a chunk of one sentence and flips a fair
  coin otherwise, which gives ~60% random pairs on PubMed abstracts at length 128
  (measured: 0.602 at 128, 0.580 at 512). We flip the coin of multi-sentence chunks
  with a probability that pulls the running share back to 0.5, so labels stay random
  per pair but balanced overall.
  """

  def __init__(self):
    self.random = 0
    self.total = 0

  def random_prob(self) -> float:
    excess = self.random - 0.5 * self.total  # > 0: too many random pairs so far
    return min(1.0, max(0.0, 0.5 - excess / 8.0))

  def record(self, is_random_next: bool) -> None:
    self.random += int(is_random_next)
    self.total += 1


def create_instances_from_document(document: TokenizedDocument,
                                   pool: Sequence[TokenizedDocument],
                                   max_seq_length: int, short_seq_prob: float,
                                   rng: np.random.Generator, cls_id: int, sep_id: int,
                                   balancer: NspBalancer | None = None
                                   ) -> list[InstanceSpec]:
  """BERT's algorithm for one document; random next segments come from `pool`.

  `pool` may contain `document` itself (compared by identity); as in BERT, 10 draws
  are tried to find another document. Without `balancer` the NSP coin is BERT's fair
  one; with it, see NspBalancer.
  """
  max_num_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
  target_seq_length = max_num_tokens
  if rng.random() < short_seq_prob:
    target_seq_length = int(rng.integers(2, max_num_tokens + 1))
  bounds = document.bounds
  num_sentences = document.num_sentences
  instances = []
  chunk_start = 0  # first sentence of the current chunk
  i = 0
  while i < num_sentences:
    chunk_length = bounds[i + 1] - bounds[chunk_start]
    if i == num_sentences - 1 or chunk_length >= target_seq_length:
      chunk_sentences = i + 1 - chunk_start
      a_end = 1
      if chunk_sentences >= 2:
        a_end = int(rng.integers(1, chunk_sentences))
      a_lo, a_hi = bounds[chunk_start], bounds[chunk_start + a_end]
      random_prob = balancer.random_prob() if balancer is not None else 0.5
      is_random_next = chunk_sentences == 1 or rng.random() < random_prob
      if is_random_next:
        target_b_length = target_seq_length - (a_hi - a_lo)
        other = document
        for _ in range(10):
          other = pool[int(rng.integers(0, len(pool)))]
          if other is not document:
            break
        start = int(rng.integers(0, other.num_sentences))
        b_lo = other.bounds[start]
        # First sentence end at which B reaches its target (or the document end).
        ends = other.bounds[start + 1:]
        reach = int(np.searchsorted(ends - b_lo, target_b_length))
        b_hi = ends[min(reach, len(ends) - 1)]
        b_doc = other
        # The unused part of this chunk goes back for the next instance.
        i -= chunk_sentences - a_end
      else:
        b_doc, b_lo, b_hi = document, a_hi, bounds[i + 1]
      a_front, a_back, b_front, b_back = truncate_seq_pair(
          int(a_hi - a_lo), int(b_hi - b_lo), max_num_tokens, rng)
      a_lo, a_hi = a_lo + a_front, a_hi - a_back
      b_lo, b_hi = b_lo + b_front, b_hi - b_back
      if a_hi > a_lo and b_hi > b_lo:  # BERT asserts both non-empty
        if balancer is not None:
          balancer.record(is_random_next)
        instances.append(InstanceSpec(document, int(a_lo), int(a_hi), b_doc, int(b_lo),
                                      int(b_hi), bool(is_random_next)))
      chunk_start = i + 1
    i += 1
  return instances


class InstanceMaker:
  """Stateful pair creation over consecutive blocks of documents.

  Each block's documents join the pool (the last `pool_size` documents) before any of
  them is processed, so even the first block draws random segments from other
  documents. `reset()` restarts the random stream and empties the pool.
  """

  def __init__(self, max_seq_length: int, short_seq_prob: float, seed: Sequence[int],
               cls_id: int, sep_id: int, pool_size: int = 1000, nsp_balance: bool = True):
    self._args = (max_seq_length, short_seq_prob)
    self._seed = list(seed)
    self._special = (cls_id, sep_id)
    self._pool_size = pool_size
    self._nsp_balance = nsp_balance
    self.reset()

  def reset(self) -> None:
    self._rng = np.random.default_rng(self._seed)
    self._pool: collections.deque[TokenizedDocument] = collections.deque(
        maxlen=self._pool_size)
    self._balancer = NspBalancer() if self._nsp_balance else None

  def block_instances(self, documents: Iterable[TokenizedDocument]) -> list[InstanceSpec]:
    block = [doc for doc in documents if doc.num_sentences]
    self._pool.extend(block)
    instances = []
    for document in block:
      instances.extend(create_instances_from_document(
          document, self._pool, *self._args, self._rng, *self._special,
          balancer=self._balancer))
    return instances


def instance_stream(documents: Iterable[TokenizedDocument], max_seq_length: int,
                    short_seq_prob: float, seed: Sequence[int], cls_id: int, sep_id: int,
                    pool_size: int = 1000, block_docs: int = 64,
                    nsp_balance: bool = True) -> Iterator[InstanceSpec]:
  """Instances of a stream of documents, processed in blocks as the tf.data stage does."""
  maker = InstanceMaker(max_seq_length, short_seq_prob, seed, cls_id, sep_id, pool_size,
                        nsp_balance)
  block: list[TokenizedDocument] = []
  for document in documents:
    block.append(document)
    if len(block) == block_docs:
      yield from maker.block_instances(block)
      block = []
  if block:
    yield from maker.block_instances(block)
