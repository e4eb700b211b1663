"""Segment pairs with NSP labels, as `create_instances_from_document` of original BERT.

Runs in Python (it is a sequential algorithm with "put back" of unused sentences) over a
stream of tokenized documents, block by block. Where BERT draws the random "next" segment
from all documents held in memory, we draw it from a rolling pool of the last
`pool_size` documents of the (already shuffled) stream, the current block included, so
memory stays bounded on any corpus.

A tokenized sentence is `(ids, word_start)`: int32 piece ids and a bool array that is
True on the first piece of each word (the word level of the ragged tokenizer output).
An instance is a dict of unpadded arrays: `tokens` ([CLS] A [SEP] B [SEP]),
`segment_ids`, `word_ids` (word index per position, -1 on special tokens; whole-word
masking groups positions by it) and `next_sentence_label` (0 = IsNext, 1 = random, the
convention of original BERT).
"""
from __future__ import annotations

import collections
from typing import Iterable, Iterator, Sequence

import numpy as np

Sentence = tuple[np.ndarray, np.ndarray]  # (piece ids int32, word_start bool)
TokenizedDocument = list[Sentence]


def _concat(sentences: Sequence[Sentence]) -> tuple[list[int], list[bool]]:
  ids: list[int] = []
  starts: list[bool] = []
  for sentence_ids, sentence_starts in sentences:
    ids.extend(sentence_ids.tolist())
    starts.extend(sentence_starts.tolist())
  return ids, starts


def truncate_seq_pair(a: list, b: list, a_starts: list, b_starts: list,
                      max_num_tokens: int, rng: np.random.Generator) -> None:
  """BERT `truncate_seq_pair`: trims the longer segment, at random front or back."""
  while len(a) + len(b) > max_num_tokens:
    ids, starts = (a, a_starts) if len(a) > len(b) else (b, b_starts)
    assert len(ids) >= 1
    if rng.random() < 0.5:
      del ids[0]
      del starts[0]
    else:
      ids.pop()
      starts.pop()


def _word_ids(starts: list[bool], offset: int) -> list[int]:
  """Word index per piece; a segment start always opens a word (front truncation)."""
  word_ids = []
  word = offset - 1
  for i, start in enumerate(starts):
    if start or i == 0:
      word += 1
    word_ids.append(word)
  return word_ids


def make_instance(a: list[int], b: list[int], a_starts: list[bool], b_starts: list[bool],
                  is_random_next: bool, cls_id: int, sep_id: int) -> dict[str, np.ndarray]:
  a_words = _word_ids(a_starts, 0)
  b_words = _word_ids(b_starts, (a_words[-1] + 1) if a_words else 0)
  tokens = [cls_id] + a + [sep_id] + b + [sep_id]
  return {
      "tokens": np.asarray(tokens, np.int32),
      "segment_ids": np.asarray([0] * (len(a) + 2) + [1] * (len(b) + 1), np.int32),
      "word_ids": np.asarray([-1] + a_words + [-1] + b_words + [-1], np.int32),
      "next_sentence_label": np.int32(1 if is_random_next else 0),
  }


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
                                   ) -> list[dict[str, np.ndarray]]:
  """BERT's algorithm for one document; random next segments come from `pool`.

  `pool` may contain `document` itself (compared by identity); as in BERT, 10 draws
  are tried to find another document. Without `balancer` the NSP coin is BERT's fair
  one; with it, see NspBalancer.
  """
  max_num_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
  target_seq_length = max_num_tokens
  if rng.random() < short_seq_prob:
    target_seq_length = int(rng.integers(2, max_num_tokens + 1))
  instances = []
  current_chunk: list[Sentence] = []
  current_length = 0
  i = 0
  while i < len(document):
    current_chunk.append(document[i])
    current_length += len(document[i][0])
    if i == len(document) - 1 or current_length >= target_seq_length:
      if current_chunk:
        a_end = 1
        if len(current_chunk) >= 2:
          a_end = int(rng.integers(1, len(current_chunk)))
        a, a_starts = _concat(current_chunk[:a_end])
        random_prob = balancer.random_prob() if balancer is not None else 0.5
        is_random_next = len(current_chunk) == 1 or rng.random() < random_prob
        if is_random_next:
          target_b_length = target_seq_length - len(a)
          other = document
          for _ in range(10):
            other = pool[int(rng.integers(0, len(pool)))]
            if other is not document:
              break
          random_start = int(rng.integers(0, len(other)))
          b_sentences = []
          b_length = 0
          for sentence in other[random_start:]:
            b_sentences.append(sentence)
            b_length += len(sentence[0])
            if b_length >= target_b_length:
              break
          b, b_starts = _concat(b_sentences)
          # The unused part of this chunk goes back for the next instance.
          i -= len(current_chunk) - a_end
        else:
          b, b_starts = _concat(current_chunk[a_end:])
        truncate_seq_pair(a, b, a_starts, b_starts, max_num_tokens, rng)
        if a and b:  # BERT asserts both non-empty; empty sentences can make them empty
          if balancer is not None:
            balancer.record(is_random_next)
          instances.append(make_instance(a, b, a_starts, b_starts, is_random_next,
                                         cls_id, sep_id))
      current_chunk = []
      current_length = 0
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

  def block_instances(self, documents: Iterable[TokenizedDocument]
                     ) -> list[dict[str, np.ndarray]]:
    block = [doc for doc in documents if doc]
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
                    nsp_balance: bool = True) -> Iterator[dict[str, np.ndarray]]:
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
