"""Device mesh (data, fsdp, tensor), logical-axis rules and the NamedShardings built from
them: the one place logical axes meet mesh axes.
"""
from __future__ import annotations

import functools
import math
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from biobert_jax.tree import path_str

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axes it may be sharded over (in order of preference). A mesh axis
# that an earlier dimension of the same array already uses is dropped, so a spec never
# names a mesh axis twice (e.g. an attention output kernel (heads, kv, embed) becomes
# (tensor, None, fsdp)).
#
# Parameters and activations have names of their own. A parameter's `embed` dim is split
# over fsdp (that is what makes FSDP save memory), but an activation's hidden dim must not
# be: with one name for both, XLA's propagation carried the weights' fsdp split onto the
# activations' hidden dim and left their batch whole, so under mesh.fsdp=N every device ran
# the WHOLE global batch (mini preset, fsdp=8: per-device activations f32[64,128,32] and
# f32[64,128,1024], 66 all-reduces, 4.9x the temporaries of data=8). The model pins its
# activations with `constrain` to (batch, length, act_*): batch over (data, fsdp), hidden
# whole, heads and MLP width over tensor (Megatron); XLA then all-gathers each weight where
# it is used and reduce-scatters its gradient back to the fsdp shards.
LOGICAL_AXIS_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Parameters.
    ("vocab", ("tensor",)),
    ("embed", ("fsdp",)),
    # embed_out (the second dim of the [H, H] pooler / MLM-transform kernels) stays
    # unsharded: with embed_out->tensor, XLA (jax 0.10.2, Shardy and GSPMD alike) computed
    # WRONG gradients (max abs error 0.1) for the tied MLM projection on a (2, 2, 2) mesh,
    # measured in tests/test_train_step.py's equivalence check; the cost is two [H, H]
    # matrices sharded over fsdp only.
    ("embed_out", ()),
    ("heads", ("tensor",)),
    ("kv", ()),
    ("mlp", ("tensor",)),
    ("layers", ()),
    # Activations (and batches: `batch_sharding` uses the batch rule).
    ("batch", ("data", "fsdp")),  # every data-parallel axis, fsdp included
    ("length", ()),
    ("act_embed", ()),  # whole: a Megatron block all-reduces it over tensor at its end
    ("act_heads", ("tensor",)),  # as the q/k/v kernels' heads: attention needs no collective
    ("act_kv", ()),
    ("act_mlp", ("tensor",)),  # as the intermediate kernel's mlp dim
    ("act_vocab", ("tensor",)),  # MLM logits split like the word-embedding table's rows
)
_RULES = dict(LOGICAL_AXIS_RULES)

BATCH_AXES = _RULES["batch"]


def resolve_mesh_shape(data: int, fsdp: int, tensor: int,
                       num_devices: int) -> tuple[int, int, int]:
  """Replaces a single -1 by "all remaining devices" and checks the product.

  Raises:
    ValueError: naming the offending axis sizes when they cannot fill `num_devices`.
  """
  sizes = {"data": int(data), "fsdp": int(fsdp), "tensor": int(tensor)}
  free = [k for k, v in sizes.items() if v == -1]
  bad = [k for k, v in sizes.items() if v == 0 or v < -1]
  if bad:
    raise ValueError(f"mesh axis sizes must be positive or -1, got {sizes}")
  if len(free) > 1:
    raise ValueError(f"at most one mesh axis may be -1 ('the rest'), got {sizes}")
  fixed = math.prod(v for v in sizes.values() if v != -1)
  if free:
    if num_devices % fixed:
      raise ValueError(
          f"mesh {sizes}: {num_devices} devices are not divisible by the fixed axes' "
          f"product {fixed}, so '{free[0]}=-1' cannot be resolved")
    sizes[free[0]] = num_devices // fixed
  if math.prod(sizes.values()) != num_devices:
    raise ValueError(
        f"mesh {sizes} needs {math.prod(sizes.values())} devices but "
        f"{num_devices} are available (use -1 for 'the rest')")
  return sizes["data"], sizes["fsdp"], sizes["tensor"]


def make_mesh(mesh_config: Mapping[str, int] | Any,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the (data, fsdp, tensor) mesh from a config with those three fields."""
  get = (mesh_config.get if isinstance(mesh_config, Mapping)
         else lambda k, d: getattr(mesh_config, k, d))
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_mesh_shape(get("data", 1), get("fsdp", -1), get("tensor", 1),
                             len(devices))
  slices = slice_count(devices)
  if slices > 1:
    return Mesh(_multi_slice_array(shape, devices, slices), MESH_AXES)
  try:  # topology-aware order on TPU/GPU; on CPU this is a plain reshape.
    device_array = mesh_utils.create_device_mesh(shape, devices)
  except (ValueError, NotImplementedError, AssertionError):
    device_array = np.asarray(devices).reshape(shape)
  return Mesh(device_array, MESH_AXES)


def slice_count(devices: Sequence[Any]) -> int:
  """TPU slices among `devices` (1 for anything without a `slice_index`)."""
  return len({getattr(d, "slice_index", 0) for d in devices})


def _multi_slice_array(shape: tuple[int, int, int], devices: Sequence[Any],
                       slices: int) -> np.ndarray:
  """Only `data` crosses the slower network between slices (its gradient all-reduce once
  a step); fsdp gathers and tensor all-reduces run every layer, so they stay inside a
  slice, on its interconnect (the layout of jax's `create_hybrid_device_mesh`)."""
  data, fsdp, tensor = shape
  if data % slices:
    raise ValueError(f"mesh {dict(zip(MESH_AXES, shape))} on {slices} slices: mesh.data "
                     f"must be a multiple of {slices} (only the data axis crosses slices); "
                     f"set --config.mesh.data={slices} or a multiple")
  return mesh_utils.create_hybrid_device_mesh((data // slices, fsdp, tensor),
                                              (slices, 1, 1), devices)


def logical_to_mesh_spec(logical_spec: P | Sequence[str | None] | None,
                         mesh: Mesh,
                         shape: Sequence[int] | None = None) -> P:
  """Maps one PartitionSpec of logical names to one of mesh axes.

  Mesh axes of size 1 are dropped (they change nothing), an axis already used by an
  earlier dimension is dropped (a spec may use each mesh axis once), and when `shape` is
  given, trailing mesh axes are dropped until the dimension divides evenly (a tiny model's
  odd vocabulary simply stays replicated instead of failing).

  Raises:
    ValueError: for a logical name that has no rule.
  """
  if logical_spec is None:
    return P()
  used: set[str] = set()
  out = []
  for dim, name in enumerate(tuple(logical_spec)):
    if name is None:
      out.append(None)
      continue
    if name not in _RULES:
      raise ValueError(f"logical axis '{name}' (dim {dim} of {logical_spec}) has no rule "
                       f"in biobert_jax.sharding.LOGICAL_AXIS_RULES")
    axes = [a for a in _RULES[name] if a not in used and mesh.shape.get(a, 1) > 1]
    if shape is not None:
      while axes and shape[dim] % math.prod(mesh.shape[a] for a in axes):
        axes.pop()
    used.update(axes)
    out.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
  while out and out[-1] is None:
    out.pop()
  return P(*out)


def _is_spec(x: Any) -> bool:
  return isinstance(x, P) or x is None


def param_shardings(logical_specs: Any, params: Any, mesh: Mesh) -> Any:
  """NamedShardings for a params tree from its logical PartitionSpecs.

  Args:
    logical_specs: pytree of PartitionSpecs of logical names (same structure as params).
    params: the params (arrays or ShapeDtypeStructs); only shapes are read.
    mesh: the device mesh.
  """
  return jax.tree.map(
      lambda spec, p: NamedSharding(mesh, logical_to_mesh_spec(spec, mesh, p.shape)),
      logical_specs, params, is_leaf=_is_spec)


def tree_shardings_like_params(tree: Any, params: Any, params_shardings: Any,
                               mesh: Mesh) -> Any:
  """Shardings for a tree that embeds copies of the params tree (optimizer state).

  Optax states hold params-shaped subtrees (Adam's mu/nu, LAMB's moments) next to small
  leaves (counts). A leaf whose key path ENDS with a parameter's path and has that
  parameter's shape gets the parameter's sharding; everything else is replicated.
  """
  by_path = {}
  for (path, p), s in zip(jax.tree_util.tree_leaves_with_path(params),
                          jax.tree.leaves(params_shardings)):
    by_path[tuple(path_str(path).split("/"))] = (tuple(p.shape), s)
  replicated = NamedSharding(mesh, P())

  def pick(path, leaf):
    key = tuple(path_str(path).split("/"))
    for start in range(len(key)):
      hit = by_path.get(key[start:])
      if hit is not None and hit[0] == tuple(np.shape(leaf)):
        return hit[1]
    return replicated

  return jax.tree_util.tree_map_with_path(pick, tree)


def constrain(x: jax.Array, logical_names: Sequence[str | None]) -> jax.Array:
  """Pins an activation's layout by the logical names of its dims (one per dim).

  The mesh is the one `under_mesh` (or `jax.set_mesh`) made current while tracing; with
  none this returns `x` unchanged, so a model applied outside a mesh (a notebook, a test
  on one device) is untouched. A dim that does not divide its mesh axes stays whole.
  """
  if len(logical_names) != x.ndim:
    raise ValueError(f"constrain: {len(logical_names)} logical names {tuple(logical_names)} "
                     f"for an array of shape {x.shape}")
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_mesh_spec(logical_names, mesh,
                                                                  x.shape))


def under_mesh(fn: Callable, mesh: Mesh) -> Callable:
  """`fn` traced with `mesh` current, so that the model's `constrain` calls take effect.

  The jit helpers (train/step.py) wrap every step with it; the abstract mesh is enough
  (it names the axes and their sizes; the devices come from the jit's shardings).
  """
  @functools.wraps(fn)
  def traced_under_mesh(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args, **kwargs)
  return traced_under_mesh


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Leading (batch) dim over ("data", "fsdp"), everything else replicated."""
  del ndim  # trailing dims are replicated by omission.
  return NamedSharding(mesh, P(BATCH_AXES))


def batch_shard_count(mesh: Mesh) -> int:
  """Into how many pieces a global batch is split (its size must divide by this)."""
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def global_batch_from_process_local(batch: Mapping[str, np.ndarray],
                                    mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles global jax.Arrays from each process's slice of the batch.

  Every process passes its own rows (global_batch / process_count of them); on one
  process this is simply a sharded device_put.
  """
  sharding = batch_sharding(mesh)
  out = {}
  for k, v in batch.items():
    v = np.asarray(v)
    global_shape = (v.shape[0] * jax.process_count(),) + v.shape[1:]
    out[k] = jax.make_array_from_process_local_data(sharding, v, global_shape)
  return out
