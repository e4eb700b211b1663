"""Forward-only programs compile their dots with Eigen on CPU (xla_options), with the same
outputs as XLA's default YNNPACK fusions, and a test's explicit options still apply."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from biobert_jax import models, sharding
from biobert_jax.runtime import xla_options
from biobert_jax.config import BertConfig
from biobert_jax.train import step as step_lib


def test_inference_options_on_cpu_and_the_opt_out(monkeypatch):
  monkeypatch.delenv(xla_options.ENV_VAR, raising=False)
  assert xla_options.inference_options() == {"xla_cpu_experimental_ynn_fusion_type": ""}
  monkeypatch.setenv(xla_options.ENV_VAR, "xla")
  assert xla_options.inference_options() == {}
  assert xla_options.merged(None, {}) is None
  assert xla_options.merged({"a": 1, "b": 2}, {"b": 3, "c": 4}) == {"a": 1, "b": 2, "c": 4}


def test_eval_step_compiles_without_ynnpack_fusions_and_predicts_the_same(monkeypatch):
  monkeypatch.delenv(xla_options.ENV_VAR, raising=False)
  config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64,
                      max_position_embeddings=64)
  module = models.BertForTokenClassification(config, num_labels=3)
  params = models.init_params(module, jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {"input_ids": rng.integers(0, 64, (4, 48)).astype(np.int32),
           "token_type_ids": np.zeros((4, 48), np.int32),
           "attention_mask": (np.arange(48)[None] < np.array([[48], [30], [12], [1]]))
                             .astype(np.int32)}

  def forward(p, b):
    return module.apply({"params": p}, b["input_ids"], b["token_type_ids"],
                        b["attention_mask"], deterministic=True)

  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  shardings = jax.tree.map(lambda _: NamedSharding(mesh, P()), params)
  eval_step = step_lib.jit_eval_step(forward, shardings, mesh)
  default_text = jax.jit(forward).lower(params, batch).compile().as_text()
  eval_text = eval_step.lower(params, batch).compile().as_text()
  assert "__ynn_fusion" in default_text  # the case says something: XLA's default uses them
  assert "__ynn_fusion" not in eval_text
  np.testing.assert_allclose(np.asarray(eval_step(params, batch)),
                             np.asarray(jax.jit(forward)(params, batch)), atol=1e-5)
  # An explicit option (tests compile at optimisation level 0) is kept beside them.
  fast = step_lib.jit_eval_step(forward, shardings, mesh,
                                compiler_options={"xla_backend_optimization_level": 0})
  assert "__ynn_fusion" not in fast.lower(params, batch).compile().as_text()
  assert jnp.allclose(fast(params, batch), eval_step(params, batch), atol=1e-5)
