"""The shapes a fine-tune will feed, known before its first step, and the steps compiled
ahead for them (runtime/ahead.py): the announced lengths are exactly those the batches
have, in first-use order, and a compiled-ahead step computes what the jitted one does."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biobert_jax.tasks.base import SplitData
from biobert_jax.runtime import ahead
from biobert_jax.trainers import finetune_batches as fb


def _split(n, full, seed):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, full + 1, n)
  mask = (np.arange(full)[None] < lengths[:, None]).astype(np.int64)
  return SplitData({"input_ids": rng.integers(0, 50, (n, full)) * mask,
                    "attention_mask": mask, "label_ids": rng.integers(0, 3, n)}, list(range(n)))


def _first_seen(lengths):
  return list(dict.fromkeys(lengths))


@pytest.mark.parametrize("bucket,group,start", [(0, 0, 0), (8, 0, 0), (8, 3, 0), (16, 2, 7),
                                                (5, 4, 13)])
def test_train_lengths_are_the_fed_lengths_in_first_use_order(bucket, group, start):
  split, batch, steps_per_epoch, seed = _split(103, 48, seed=bucket + group), 8, 12, 5
  total = 3 * steps_per_epoch
  fed = [b["input_ids"].shape[1] for b in itertools.islice(
      fb.train_batches(split, batch, steps_per_epoch, seed, start, bucket, group),
      total - start)]
  assert fb.train_lengths(split, batch, steps_per_epoch, seed, start, total, bucket,
                          group) == _first_seen(fed)
  if bucket:
    assert len(set(fed)) > 1  # the case says something


@pytest.mark.parametrize("bucket,batch", [(0, 8), (8, 8), (16, 5), (8, 200)])
def test_predict_lengths_are_the_fed_lengths_in_order(bucket, batch):
  split, fed = _split(61, 40, seed=3), []

  def record(params, b):
    del params
    fed.append(b["input_ids"].shape[1])
    return {"x": np.zeros((b["input_ids"].shape[0],), np.float32)}

  fb.predict_split(record, None, split, batch, bucket)
  assert fb.predict_lengths(split, batch, bucket) == _first_seen(fed)


def test_several_splits_are_predicted_in_one_pass_with_the_same_outputs():
  splits, fed = [_split(n, 40, seed=n) for n in (13, 7, 22)], []

  def rowwise(params, b):  # each row's output depends on that row only, as a model's does
    del params
    fed.append(b["input_ids"].shape)
    return {"tokens": b["input_ids"] * 2 + b["attention_mask"],
            "total": b["input_ids"].sum(axis=1)}

  alone = [fb.predict_split(rowwise, None, s, 8, 16) for s in splits]
  fed.clear()
  joined = fb.predict_splits(rowwise, None, splits, 8, 16)
  assert len(joined) == 3
  for a, j in zip(alone, joined):
    assert a.keys() == j.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], j[k])
  assert sum(shape[0] for shape in fed) == 48  # 42 rows in 6 batches (per split: 9 batches)
  (passed,) = fb.prediction_passes(splits)
  assert fb.predict_lengths(passed, 8, 16) == _first_seen([shape[1] for shape in fed])


def test_splits_of_other_widths_are_predicted_one_by_one():
  splits = [_split(5, 40, seed=0), _split(6, 24, seed=1)]
  assert fb.prediction_passes(splits) == splits
  out = fb.predict_splits(lambda p, b: {"n": b["input_ids"].sum(axis=1)}, None, splits, 4)
  np.testing.assert_array_equal(out[1]["n"], splits[1].features["input_ids"].sum(axis=1))


def test_example_batch_has_the_fed_keys_shapes_and_dtypes():
  split = _split(20, 40, seed=1)
  fed = next(fb.train_batches(split, 8, 2, 0, 0, bucket=16))
  example = fb.example_batch(split, 8, fed["input_ids"].shape[1])
  assert ahead.batch_key(example) == ahead.batch_key(fed)


def test_compiled_by_shape_dispatches_on_shape_and_computes_what_jit_does():
  jitted = jax.jit(lambda w, b: jnp.tanh(b["x"] @ w).sum(axis=1))
  step = ahead.CompiledByShape(jitted)
  w = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)), jnp.float32)
  batches = [{"x": np.random.default_rng(n).normal(size=(3, n, 6)).astype(np.float32)}
             for n in (5, 9)]
  assert step.compile_ahead((ahead.abstract(w),), [ahead.abstract(b) for b in batches], 2) == 2
  assert step.compile_ahead((w,), batches, 2) == 0  # already compiled: nothing restarts
  for b in batches:
    np.testing.assert_array_equal(step(w, b), jitted(w, b))
  assert step.on_demand == 0 and step.num_compiled == 2
  other = {"x": np.ones((3, 7, 6), np.float32)}  # not announced: jit compiles it
  np.testing.assert_array_equal(step(w, other), jitted(w, other))
  assert step.on_demand == 1


def test_a_failed_compilation_is_raised_by_the_call_that_needs_it():
  step = ahead.CompiledByShape(jax.jit(lambda w, b: b["x"] @ w))
  w, bad = jnp.ones((6, 4)), {"x": np.ones((3, 5), np.float32)}  # 5 != 6: no program
  step.compile_ahead((w,), [bad], 1)
  with pytest.raises(TypeError, match="dot_general"):
    step.wait()
  with pytest.raises(TypeError, match="dot_general"):
    step(w, bad)


def test_too_few_rows_for_one_batch_is_an_error_not_an_endless_loop():
  with pytest.raises(ValueError, match="5 training features cannot fill one batch of 8"):
    next(fb.train_batches(_split(5, 16, seed=0), 8, 1, 0, 0))
