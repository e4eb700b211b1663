"""The train state: a plain dict {"params", "opt_state", "step", "rng"} and its shardings."""
from __future__ import annotations

from typing import Any
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from biobert_jax import sharding as sharding_lib


def init_state(params: Any, tx: optax.GradientTransformation, seed: int) -> dict:
  """Fresh state around `params`; step 0; a raw uint32 PRNG key (orbax-friendly)."""
  return {
      "params": params,
      "opt_state": tx.init(params),
      "step": jnp.zeros((), jnp.int32),
      "rng": jax.random.PRNGKey(seed),
  }


def state_shardings(abstract_params: Any, logical_specs: Any,
                    tx: optax.GradientTransformation, mesh: Mesh) -> tuple[Any, Any]:
  """(abstract state, NamedShardings of the state) for params of the given shapes.

  Optimizer-state shardings are derived from the params' ones by key path (see
  sharding.tree_shardings_like_params), so Adam's mu/nu are sharded like their params.
  """
  params_sh = sharding_lib.param_shardings(logical_specs, abstract_params, mesh)
  abstract = jax.eval_shape(lambda p: init_state(p, tx, 0), abstract_params)
  replicated = NamedSharding(mesh, P())
  shardings = {
      "params": params_sh,
      "opt_state": sharding_lib.tree_shardings_like_params(
          abstract["opt_state"], abstract_params, params_sh, mesh),
      "step": replicated,
      "rng": replicated,
  }
  return abstract, shardings


def with_shardings(abstract: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs carrying shardings: the restore target for orbax."""
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def create_state(init_params_fn: Callable[[jax.Array], Any], logical_specs: Any,
                 tx: optax.GradientTransformation, mesh: Mesh,
                 seed: int) -> tuple[dict, Any]:
  """Initialises params and optimizer state directly in their shardings.

  Args:
    init_params_fn: rng -> params (plain, unboxed); traced under jit, so the full model
      never has to fit on one device.
    logical_specs: logical PartitionSpecs of the params.
    tx: the optimizer.
    mesh: the device mesh.
    seed: seeds both the params and the train rng (different streams).

  Returns:
    (state, state shardings).
  """
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))
  abstract_params = jax.eval_shape(init_params_fn, init_rng)
  _, shardings = state_shardings(abstract_params, logical_specs, tx, mesh)

  def make(rng):
    state = init_state(init_params_fn(rng), tx, seed)
    state["rng"] = train_rng
    return state

  state = jax.jit(make, out_shardings=shardings)(init_rng)
  return state, shardings


def state_from_params(params: Any, logical_specs: Any, tx: optax.GradientTransformation,
                      mesh: Mesh, seed: int) -> tuple[dict, Any]:
  """Like create_state, but around given (e.g. loaded) params."""
  abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  _, shardings = state_shardings(abstract_params, logical_specs, tx, mesh)
  params = jax.device_put(params, shardings["params"])
  _, train_rng = jax.random.split(jax.random.PRNGKey(seed))

  def make(p):
    state = init_state(p, tx, seed)
    state["rng"] = train_rng
    return state

  state = jax.jit(make, in_shardings=(shardings["params"],), out_shardings=shardings)(params)
  return state, shardings
