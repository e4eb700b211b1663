"""Pre-training examples: MLM/NSP statistics, whole-word masking, determinism, hosts,
hold-out, resume, and static TFRecords read with original BERT's parsing spec."""
import json

import numpy as np
import pytest

from _pretrain_util import small_pipeline_config, write_corpus
from data_pipeline import pretraining
from data_pipeline.pretraining import sources
from data_pipeline._tf import tf
from data_pipeline.corpora import ReadStats
from data_pipeline.pretraining.static_examples import name_to_features
from data_pipeline.pretraining.static_writer import write_static_examples
from data_pipeline.tokenization import load_tokenizer

NUM_DOCS = 240
NUM_FILES = 4


@pytest.fixture(scope="module")
def tokenizer(data_dir):
  return load_tokenizer(data_dir / "vocab/bert-base-cased-vocab.txt", lowercase=False)


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
  """NUM_DOCS real abstracts, one per line, spread over NUM_FILES files."""
  return write_corpus(data_dir, tmp_path_factory.mktemp("pt_corpus"), NUM_DOCS, NUM_FILES)


_config = small_pipeline_config


def _batches(config, tokenizer, n=None, **kwargs):
  it = pretraining.make_dataset(config, tokenizer=tokenizer, **kwargs).as_numpy_iterator()
  return [next(it) for _ in range(n)] if n is not None else list(it)


def _stack(batches):
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _originals(b):
  """The unmasked token ids: masked positions restored from masked_lm_ids."""
  ids = b["input_ids"].copy()
  for row in range(ids.shape[0]):
    real = b["masked_lm_weights"][row] > 0
    ids[row, b["masked_lm_positions"][row][real]] = b["masked_lm_ids"][row][real]
  return ids


def test_batch_layout(corpus, tokenizer):
  b = _batches(_config(corpus), tokenizer, 1)[0]
  assert b["input_ids"].shape == (8, 64) and b["input_ids"].dtype == np.int32
  assert b["masked_lm_positions"].shape == (8, 12)
  assert b["masked_lm_weights"].dtype == np.float32
  assert b["next_sentence_labels"].shape == (8,)
  original = _originals(b)
  for row in range(8):
    n = int(b["input_mask"][row].sum())
    assert (b["input_mask"][row][:n] == 1).all() and (b["input_mask"][row][n:] == 0).all()
    tokens = original[row][:n]
    assert tokens[0] == tokenizer.cls_id and tokens[-1] == tokenizer.sep_id
    assert (tokens == tokenizer.sep_id).sum() == 2
    first_sep = int(np.argmax(tokens == tokenizer.sep_id))
    expected_segments = [0] * (first_sep + 1) + [1] * (n - first_sep - 1)
    assert b["segment_ids"][row][:n].tolist() == expected_segments
    assert (b["input_ids"][row][n:] == 0).all() and (b["segment_ids"][row][n:] == 0).all()


def test_mlm_and_nsp_statistics(corpus, tokenizer):
  config = _config(corpus, max_seq_length=128, max_predictions_per_seq=40, repeat=False)
  b = _stack(_batches(config, tokenizer))
  assert len(b["input_ids"]) >= 300
  weights = b["masked_lm_weights"] > 0
  maskable = b["input_mask"].sum() - 3 * len(b["input_mask"])  # [CLS], 2x [SEP]
  assert abs(weights.sum() / maskable - 0.15) <= 0.01
  rows, cols = np.nonzero(weights)
  shown = b["input_ids"][rows, b["masked_lm_positions"][rows, cols]]
  truth = b["masked_lm_ids"][rows, cols]
  as_mask = np.mean(shown == tokenizer.mask_id)
  unchanged = np.mean(shown == truth)
  replaced = 1.0 - as_mask - unchanged
  assert abs(as_mask - 0.8) <= 0.02 and abs(unchanged - 0.1) <= 0.02
  assert abs(replaced - 0.1) <= 0.02
  specials = {tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id}
  assert not specials & set(truth.tolist())  # special tokens are never predicted
  assert (b["masked_lm_positions"][rows, cols] > 0).all()
  assert abs(b["next_sentence_labels"].mean() - 0.5) <= 0.03


def test_whole_word_masking_never_splits_a_word(corpus, tokenizer):
  config = _config(corpus, whole_word_masking=True, max_predictions_per_seq=20,
                   repeat=False)
  batches = _batches(config, tokenizer)
  is_continuation = np.array([p.startswith("##") for p in tokenizer.vocab] +
                             [False] * (tokenizer.vocab_size - len(tokenizer.vocab)))
  words_checked = masked_pieces = maskable = 0
  for b in batches:
    original = _originals(b)
    for row in range(len(original)):
      n = int(b["input_mask"][row].sum())
      picked = np.zeros(n, bool)
      real = b["masked_lm_weights"][row] > 0
      picked[b["masked_lm_positions"][row][real]] = True
      masked_pieces += picked.sum()
      maskable += n - 3
      tokens = original[row][:n]
      # A word = a piece plus the "##" pieces after it (BERT's own WWM grouping), a
      # segment start always opening a new word.
      start = 0
      for i in range(1, n + 1):
        if (i == n or not is_continuation[tokens[i]]
            or tokens[i - 1] in (tokenizer.cls_id, tokenizer.sep_id)):
          assert picked[start:i].all() or not picked[start:i].any(), tokens[start:i]
          words_checked += picked[start:i].any() and i - start > 1
          start = i
  assert words_checked > 20  # multi-piece words were masked, and masked whole
  assert 0.12 <= masked_pieces / maskable <= 0.16


def test_same_seed_same_batches_other_seed_differs(corpus, tokenizer):
  first = _batches(_config(corpus), tokenizer, 3)
  again = _batches(_config(corpus), tokenizer, 3)
  other = _batches(_config(corpus, seed=7), tokenizer, 3)
  for a, b in zip(first, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert any(not np.array_equal(a["input_ids"], c["input_ids"]) for a, c in zip(first, other))


def _doc_ids(config, files, process_index, process_count, want_holdout=False):
  files, shard_index, shard_count = sources.shard_files(files, process_index, process_count)
  ds = sources.document_dataset(
      files, file_format=config.file_format, on_error="raise",
      doc_shard=(shard_index, shard_count), holdout_every=config.holdout_every,
      want_holdout=want_holdout, shuffle_files=True, repeat=False, seed=config.seed,
      cycle_length=4)
  return [doc_id.decode() for doc_id, _ in ds.as_numpy_iterator()]


@pytest.mark.parametrize("num_files", [NUM_FILES, 1])
def test_hosts_read_disjoint_documents(corpus, num_files):
  config = _config(corpus)
  files = sources.expand_files(config.train_files)[:num_files]
  host0 = _doc_ids(config, files, 0, 2)
  host1 = _doc_ids(config, files, 1, 2)
  expected = NUM_DOCS * num_files // NUM_FILES
  assert not set(host0) & set(host1)
  assert len(set(host0) | set(host1)) == len(host0) + len(host1) == expected
  assert abs(len(host0) - len(host1)) <= expected // 2


def test_holdout_is_disjoint_and_eval_is_repeatable(corpus, tokenizer):
  config = _config(corpus, holdout_every=4)
  files = sources.expand_files(config.train_files)
  train = set(_doc_ids(config, files, 0, 1))
  held = set(_doc_ids(config, files, 0, 1, want_holdout=True))
  assert not train & held and len(train | held) == NUM_DOCS
  assert 0.1 * NUM_DOCS < len(held) < 0.4 * NUM_DOCS
  first = list(pretraining.make_eval_dataset(config, tokenizer=tokenizer).as_numpy_iterator())
  again = list(pretraining.make_eval_dataset(config, tokenizer=tokenizer).as_numpy_iterator())
  assert len(first) == len(again) > 0
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a["input_ids"], b["input_ids"])


def test_resume_continues_with_the_next_unseen_batch(corpus, tokenizer):
  config = _config(corpus)
  uninterrupted = pretraining.make_iterator(config, tokenizer=tokenizer)
  for _ in range(3):
    next(uninterrupted)
  state = json.loads(json.dumps(uninterrupted.get_state()))
  expected = [next(uninterrupted) for _ in range(2)]
  resumed = pretraining.make_iterator(config, tokenizer=tokenizer)
  resumed.set_state(state)
  assert resumed.get_state()["batches_consumed"] == 3
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  with pytest.raises(ValueError, match="config_fingerprint"):
    pretraining.make_iterator(_config(corpus, seed=99), tokenizer=tokenizer).set_state(state)


def test_static_tfrecords_decode_with_bert_spec(corpus, tokenizer, tmp_path):
  config = _config(corpus, dupe_factor=2)
  config.train_files = str(corpus / "part-0.txt")
  paths = write_static_examples(config, str(tmp_path / "ex-{shard}.tfrecord"), num_shards=2,
                                tokenizer=tokenizer)
  # Original BERT run_pretraining.py _decode_record: parse, then cast int64 -> int32.
  spec = name_to_features(64, 12)
  records = list(tf.data.TFRecordDataset(paths))
  assert len(records) > 20
  raw = tf.train.Example.FromString(records[0].numpy())
  assert raw.features.feature["input_ids"].int64_list.value  # int64, as BERT writes
  assert raw.features.feature["masked_lm_weights"].float_list.value
  parsed = [tf.io.parse_single_example(r, spec) for r in records]
  assert all(p["input_ids"].shape == (64,) for p in parsed)
  assert all(p["next_sentence_labels"].shape == (1,) for p in parsed)
  # The two dupes differ (new segments and masks), as BERT's dupe_factor passes.
  half = len(parsed) // 2
  assert any(not np.array_equal(parsed[i]["input_ids"], parsed[half + i]["input_ids"])
             for i in range(min(half, 10)))
  # And the pipeline reads them back in static mode.
  static = _config(corpus, file_format="tfrecord", train_files=str(tmp_path / "ex-*"))
  b = _batches(static, tokenizer, 1)[0]
  assert b["input_ids"].shape == (8, 64) and b["input_ids"].dtype == np.int32
  assert b["next_sentence_labels"].shape == (8,)
  values = {tuple(p["input_ids"].numpy()) for p in parsed}
  assert all(tuple(row) in values for row in b["input_ids"])


def test_malformed_file_in_pipeline_raises_or_is_counted(corpus, tokenizer, tmp_path):
  bad = tmp_path / "bad.txt"
  bad.write_bytes(b"A good first document. It has two sentences.\n"
                  b"A bad \xff line.\nA good third document. With more text here.\n")
  config = _config(corpus, train_files=f"{corpus}/part-0.txt,{bad}", repeat=False,
                   on_error="raise")
  with pytest.raises(tf.errors.OpError, match=r"bad\.txt:2: invalid UTF-8"):
    _batches(config, tokenizer)
  config.on_error = "skip"
  stats = ReadStats()
  assert len(_batches(config, tokenizer, stats=stats)) > 0
  assert stats.skipped_errors == 1 and stats.files == 2
  assert stats.documents == NUM_DOCS // NUM_FILES + 2
