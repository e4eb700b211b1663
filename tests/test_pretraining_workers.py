"""The dynamic pipeline over worker processes (config.num_workers): each worker is a
virtual host, the main process takes batches round robin, resume is exact, and a worker's
error reaches the caller with its message."""
import json

import numpy as np
import pytest

from _pretrain_util import small_pipeline_config, write_corpus
from data_pipeline import pretraining
from data_pipeline.pretraining import workers

NUM_DOCS = 160
NUM_FILES = 4


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
  return write_corpus(data_dir, tmp_path_factory.mktemp("pt_workers"), NUM_DOCS, NUM_FILES)


def _config(data_dir, corpus, **overrides):
  return small_pipeline_config(
      corpus, vocab_path=str(data_dir / "vocab/bert-base-cased-vocab.txt"), **overrides)


def _assert_same(got, want):
  assert sorted(got) == sorted(want)
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_worker_skips_count_round_robin_deliveries():
  assert workers.worker_skips(0, 3) == [0, 0, 0]
  assert workers.worker_skips(1, 3) == [1, 0, 0]
  assert workers.worker_skips(7, 3) == [3, 2, 2]
  for n in range(20):
    assert sum(workers.worker_skips(n, 4)) == n


@pytest.mark.slow  # spawns worker processes, each importing TensorFlow
def test_workers_are_virtual_hosts_taken_round_robin_and_resume_exactly(data_dir, corpus):
  config = _config(data_dir, corpus, num_workers=2)
  # What each worker must produce: the in-process pipeline as virtual host k of 2.
  single = _config(data_dir, corpus)
  streams = [pretraining.make_dataset(single, k, 2).as_numpy_iterator() for k in range(2)]
  expected = [next(streams[i % 2]) for i in range(6)]  # batch i from worker i % 2

  it = pretraining.make_iterator(config)
  assert isinstance(it, workers.ParallelPretrainingIterator)
  try:
    for want in expected[:3]:
      _assert_same(next(it), want)
    state = json.loads(json.dumps(it.get_state()))
  finally:
    it.close()
  assert state["batches_consumed"] == 3
  assert state["config_fingerprint"] != pretraining.config_fingerprint(single)

  resumed = pretraining.make_iterator(config)
  resumed.set_state(state)
  try:
    for want in expected[3:]:
      _assert_same(next(resumed), want)
  finally:
    resumed.close()
  with pytest.raises(ValueError, match="config_fingerprint"):
    pretraining.make_iterator(_config(data_dir, corpus, num_workers=3)).set_state(state)


@pytest.mark.slow
def test_worker_error_names_the_file_and_bad_settings_fail(data_dir, corpus, tmp_path):
  bad = tmp_path / "notes.txt"
  bad.write_text("\n\n\n")  # no document with a token: the pipeline refuses it
  it = pretraining.make_iterator(_config(data_dir, corpus, train_files=str(bad),
                                         num_workers=2))
  with pytest.raises(workers.WorkerError, match="notes.txt"):
    next(it)
  it.close()
  with pytest.raises(ValueError, match="num_workers"):
    pretraining.make_iterator(_config(data_dir, corpus, num_workers=0))
  with pytest.raises(ValueError, match="tokenizer"):
    pretraining.make_iterator(_config(data_dir, corpus, num_workers=2), tokenizer=object())
