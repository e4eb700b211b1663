"""The one batched-prediction loop (dev/test evaluation, predict, annotate): outputs equal an
unbatched forward, in feature order, whatever the batching; and the lengths announced for
compiling ahead are those it feeds."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from biobert_jax.trainers import batched_predict as bp


def _features(n, full, seed):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, full + 1, n)
  mask = (np.arange(full)[None] < lengths[:, None]).astype(np.int64)
  return {"input_ids": rng.integers(1, 50, (n, full)) * mask, "attention_mask": mask,
          "row": np.arange(n)}


def _forward(params, batch):
  """Row-wise, as a model is: per position, per position and label, and per row."""
  x = jnp.tanh(batch["input_ids"] * params + batch["attention_mask"])
  return {"tokens": x, "pairs": (x[..., None] * jnp.arange(1.0, 3.0), batch["row"]),
          "total": batch["input_ids"].sum(axis=1)}


def _fed_lengths(batches):
  """The sequence length of each batch, per feature row."""
  length = np.zeros(sum(len(rows) for rows, _ in batches), np.int64)
  for rows, n in batches:
    length[rows] = n
  return length


@pytest.mark.parametrize("batch_size,bucket", [(8, 0), (8, 16), (5, 8), (64, 16), (1, 4)])
def test_outputs_equal_an_unbatched_forward_in_feature_order(batch_size, bucket):
  features, fed = _features(37, 40, seed=batch_size + bucket), []

  def forward(params, batch):
    fed.append({k: (v.shape, v.dtype) for k, v in batch.items()})
    return _forward(params, batch)

  out = bp.predict_in_batches(forward, 0.1, features, batch_size, bucket=bucket)
  whole = jax.device_get(_forward(0.1, bp.device_dtypes(features)))
  kept = np.arange(40)[None] < _fed_lengths(bp.batch_plan(features, batch_size, bucket))[:, None]
  np.testing.assert_array_equal(out["tokens"], np.where(kept, whole["tokens"], 0))
  np.testing.assert_array_equal(out["pairs"][0], np.where(kept[..., None], whole["pairs"][0], 0))
  np.testing.assert_array_equal(out["pairs"][1], np.arange(37))  # order restored
  np.testing.assert_array_equal(out["total"], whole["total"])
  assert out["tokens"].shape == (37, 40) and out["pairs"][0].shape == (37, 40, 2)
  assert len(fed) == -(-37 // batch_size)  # last batch padded, then cut
  assert {shape[0] for f in fed for shape, _ in f.values()} == {batch_size}
  assert all(dtype == np.int32 for f in fed for _, dtype in f.values())
  if bucket and batch_size < 37:  # (one batch holds the longest row: nothing trimmed)
    assert not kept.all()  # some outputs were trimmed, and came back as zeros


@pytest.mark.parametrize("batch_size,bucket", [(8, 0), (8, 8), (5, 16), (64, 8), (7, 3)])
def test_predict_lengths_are_the_fed_lengths_in_order(batch_size, bucket):
  features, fed = _features(61, 40, seed=3), []

  def forward(params, batch):
    fed.append(batch["input_ids"].shape[1])
    return _forward(params, batch)

  bp.predict_in_batches(forward, 0.1, features, batch_size, bucket=bucket)
  assert bp.predict_lengths(features, batch_size, bucket) == list(dict.fromkeys(fed))
  assert [n for _, n in bp.batch_plan(features, batch_size, bucket)] == fed


def test_buckets_sort_rows_by_length_and_round_up():
  features = _features(23, 40, seed=0)
  batches = bp.batch_plan(features, 5, 16)
  lengths = features["attention_mask"].sum(axis=1)
  order = np.concatenate([rows for rows, _ in batches])
  assert sorted(order.tolist()) == list(range(23))
  assert np.all(np.diff(lengths[order]) >= 0)
  for rows, n in batches:
    assert n == min(40, max(16, -(-lengths[rows].max() // 16) * 16))


def test_batches_placed_with_a_sharding_give_the_same_outputs():
  mesh = Mesh(np.asarray(jax.devices()[:4]), ("data",))
  put = NamedSharding(mesh, P("data"))
  features, seen = _features(30, 24, seed=1), []

  @jax.jit
  def forward(params, batch):
    return _forward(params, batch)

  def placed(params, batch):
    seen.append({v.sharding for v in batch.values()})
    return forward(params, batch)

  out = bp.predict_in_batches(placed, 0.1, features, 8, bucket=8, put=put)
  plain = bp.predict_in_batches(forward, 0.1, features, 8, bucket=8)
  assert all(s == {put} for s in seen)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(plain)):
    assert isinstance(a, np.ndarray)
    np.testing.assert_array_equal(a, b)


def test_without_a_mask_rows_run_untrimmed_in_order():
  ids = np.arange(7 * 6).reshape(7, 6)
  out = bp.predict_in_batches(lambda p, b: {"ids": b["input_ids"] + p}, 1, {"input_ids": ids},
                              3, bucket=4)
  np.testing.assert_array_equal(out["ids"], ids + 1)
  assert bp.predict_lengths({"input_ids": ids}, 3, 4) == []


def test_no_rows_run_nothing():
  features = {k: v[:0] for k, v in _features(3, 8, seed=0).items()}
  assert bp.predict_in_batches(lambda p, b: pytest.fail("ran"), None, features, 4) is None
  assert bp.predict_lengths(features, 4, 8) == []
