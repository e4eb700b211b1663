"""Mesh construction, logical-axis rules and the NamedShardings derived from them."""
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from biobert_jax import models, sharding
from biobert_jax.configs.optim import bert_spec
from biobert_jax.train import optim
from biobert_jax.train import state as state_lib

from _pretrain_util import tiny_bert_config


def test_resolve_mesh_shape_fills_the_rest_and_validates():
  assert sharding.resolve_mesh_shape(1, -1, 1, 8) == (1, 8, 1)
  assert sharding.resolve_mesh_shape(2, 2, -1, 8) == (2, 2, 2)
  with pytest.raises(ValueError, match="at most one"):
    sharding.resolve_mesh_shape(-1, -1, 1, 8)
  with pytest.raises(ValueError, match="needs 12 devices"):
    sharding.resolve_mesh_shape(3, 2, 2, 8)
  with pytest.raises(ValueError, match="not divisible"):
    sharding.resolve_mesh_shape(3, -1, 1, 8)


def test_make_mesh_uses_all_devices():
  mesh = sharding.make_mesh({"data": 2, "fsdp": -1, "tensor": 2})
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in jax.devices())


def test_logical_spec_never_repeats_a_mesh_axis_and_respects_divisibility():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  assert sharding.logical_to_mesh_spec(P("vocab", "embed"), mesh) == P("tensor", "fsdp")
  assert sharding.logical_to_mesh_spec(P("heads", "kv", "embed"), mesh) == P("tensor", None, "fsdp")
  # batch takes data+fsdp, so embed (fsdp) must stay unsharded in the same spec.
  assert sharding.logical_to_mesh_spec(P("batch", "length", "embed"), mesh) == P(("data", "fsdp"))
  # 301 rows cannot be split in 2: replicated rather than an error.
  assert sharding.logical_to_mesh_spec(P("vocab", "embed"), mesh, (301, 32)) == P(None, "fsdp")
  with pytest.raises(ValueError, match="'nonsense'"):
    sharding.logical_to_mesh_spec(P("nonsense"), mesh)
  # Size-1 mesh axes are dropped: on one device everything is replicated.
  one = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  assert sharding.logical_to_mesh_spec(P("vocab", "embed"), one) == P()


def test_params_and_adam_moments_are_sharded_by_the_rules():
  model = models.BertForPreTraining(tiny_bert_config())
  specs = models.logical_axes(model)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  tx, _ = optim.make_optimizer(bert_spec(learning_rate=1e-4, warmup_steps=0,
                                          total_steps=10))
  abstract, shardings = state_lib.state_shardings(models.param_shapes(model), specs, tx, mesh)
  enc = shardings["params"]["encoder"]
  assert enc["embeddings"]["word_embeddings"]["embedding"].spec == P("tensor", "fsdp")
  query = enc["encoder"]["layer_0"]["attention"]["self"]["query"]["kernel"]
  assert query.spec == P("fsdp", "tensor")
  assert enc["encoder"]["layer_1"]["intermediate"]["dense"]["kernel"].spec == P("fsdp", "tensor")
  assert enc["encoder"]["layer_1"]["output"]["dense"]["kernel"].spec == P("tensor", "fsdp")
  # Every spec names each mesh axis at most once.
  for s in jax.tree.leaves(shardings):
    named = [a for e in s.spec if e for a in (e if isinstance(e, tuple) else (e,))]
    assert len(named) == len(set(named)), s.spec
  # Adam's mu/nu leaves carry their parameter's sharding; the count is replicated.
  flat = jax.tree_util.tree_leaves_with_path(shardings["opt_state"])
  mu_query = [s for k, s in flat
              if "mu" in jax.tree_util.keystr(k) and "layer_0']['attention']['self']['query']['kernel"  # noqa: E501
              in jax.tree_util.keystr(k)]
  assert mu_query and mu_query[0].spec == P("fsdp", "tensor")
  counts = [s for k, s in flat if "count" in jax.tree_util.keystr(k)]
  assert counts and all(s.spec == P() for s in counts)


def test_global_batch_is_split_over_data_and_fsdp():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  batch = {"input_ids": np.arange(8 * 4, dtype=np.int32).reshape(8, 4)}
  out = sharding.global_batch_from_process_local(batch, mesh)["input_ids"]
  assert out.shape == (8, 4)
  assert out.sharding.spec == P(("data", "fsdp"))
  np.testing.assert_array_equal(np.asarray(out), batch["input_ids"])
  # Each device holds 2 rows; the 2 tensor-parallel replicas hold the same rows.
  assert {s.data.shape for s in out.addressable_shards} == {(2, 4)}
  assert sharding.batch_shard_count(mesh) == 4
