"""BERT segment-pair creation (pure Python, no TensorFlow): structure and truncation."""
import numpy as np

from data_pipeline.pretraining.instances import (InstanceMaker, TokenizedDocument,
                                                 create_instances_from_document,
                                                 flatten_instances, make_document,
                                                 truncate_seq_pair)

CLS, SEP = 101, 102


def _document(doc_index: int, lengths) -> TokenizedDocument:
  """Sentence s of document d holds ids 1000*d + 100*s + k; every 3rd piece continues."""
  return make_document([
      (np.arange(n) + 1000 * doc_index + 100 * s, np.arange(n) % 3 != 2)
      for s, n in enumerate(lengths)])


def test_instances_follow_bert_structure():
  rng = np.random.default_rng(0)
  docs = [_document(d, [12, 9, 15, 7, 11, 8]) for d in range(1, 30)]
  specs = []
  for doc in docs:
    specs += create_instances_from_document(doc, docs, 40, 0.1, rng, CLS, SEP)
  flat = flatten_instances(specs, CLS, SEP)
  splits = flat["splits"]
  assert len(splits) == len(specs) + 1 > 30
  for i, spec in enumerate(specs):
    tokens = flat["tokens"][splits[i]:splits[i + 1]]
    segments = flat["segment_ids"][splits[i]:splits[i + 1]]
    flags = flat["word_flag"][splits[i]:splits[i + 1]]
    assert len(tokens) <= 40 and tokens[0] == CLS and tokens[-1] == SEP
    sep = int(np.flatnonzero(tokens == SEP)[0])
    a, b = tokens[1:sep], tokens[sep + 1:-1]
    assert len(a) > 0 and len(b) > 0
    assert (segments[:sep + 1] == 0).all() and (segments[sep + 1:] == 1).all()
    assert flags[0] == flags[sep] == flags[-1] == -1 and flags[1] == flags[sep + 1] == 1
    a_doc, b_doc = a[0] // 1000, b[0] // 1000
    assert (a // 1000 == a_doc).all() and (b // 1000 == b_doc).all()
    if spec.is_random_next:
      assert b_doc != a_doc
    else:  # B continues the document right after A (no truncation inside the join)
      assert b_doc == a_doc and b[0] > a[-1]
  labels = flat["next_sentence_labels"]
  assert 0.35 < labels.mean() < 0.65


def test_truncate_seq_pair_trims_the_longer_segment():
  rng = np.random.default_rng(1)
  a_front, a_back, b_front, b_back = truncate_seq_pair(30, 10, 20, rng)
  assert a_front + a_back == 20 and b_front + b_back == 0
  a_front, a_back, b_front, b_back = truncate_seq_pair(30, 30, 40, rng)
  assert a_front + a_back == 10 and b_front + b_back == 10
  assert truncate_seq_pair(5, 5, 20, rng) == (0, 0, 0, 0)


def test_single_sentence_chunk_is_always_random_next_without_balance():
  rng = np.random.default_rng(2)
  docs = [_document(d, [50]) for d in range(1, 6)]  # one sentence each: BERT forces random
  specs = create_instances_from_document(docs[0], docs, 64, 0.0, rng, CLS, SEP)
  assert specs and all(s.is_random_next for s in specs)


def test_maker_balances_nsp_and_resets():
  docs = [_document(d, [30, 5, 30, 4, 25]) for d in range(1, 200)]
  balanced = InstanceMaker(64, 0.1, [3], CLS, SEP, pool_size=50)
  plain = InstanceMaker(64, 0.1, [3], CLS, SEP, pool_size=50, nsp_balance=False)
  def share(maker):
    return np.mean([s.is_random_next for s in maker.block_instances(docs)])

  assert abs(share(balanced) - 0.5) < 0.03
  assert share(plain) > 0.55  # BERT's own algorithm leans to random-next
  balanced.reset()
  again = InstanceMaker(64, 0.1, [3], CLS, SEP, pool_size=50)
  first = [(s.a_lo, s.b_lo, s.is_random_next) for s in balanced.block_instances(docs)]
  assert first == [(s.a_lo, s.b_lo, s.is_random_next) for s in again.block_instances(docs)]
