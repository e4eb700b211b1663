"""The train step: mesh equivalence, gradient accumulation, BERT's loss, bf16 compute."""
import jax
import jax.numpy as jnp
import optax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from biobert_jax import models, sharding
from biobert_jax.configs.optim import bert_spec
from biobert_jax.train import losses, optim
from biobert_jax.runtime import ahead
from biobert_jax.train import state as state_lib
from biobert_jax.train import step as step_lib

from _pretrain_util import synthetic_batch, tiny_bert_config

OPT = bert_spec(learning_rate=1e-3, warmup_steps=2, total_steps=20)
FAST_COMPILE = {"xla_backend_optimization_level": 0}  # same for every run compared


def _run(mesh_shape, batches, *, grad_accum=1, deterministic=False, dtype=jnp.float32):
  model = models.BertForPreTraining(tiny_bert_config(), dtype=dtype)
  devices = jax.devices()[:int(np.prod(mesh_shape))]
  mesh = sharding.make_mesh(dict(zip(("data", "fsdp", "tensor"), mesh_shape)), devices)
  tx, schedule = optim.make_optimizer(OPT)
  state, shardings = state_lib.create_state(lambda r: models.init_params(model, r),
                                            models.logical_axes(model), tx, mesh, seed=0)
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(model, tx, schedule, grad_accum_steps=grad_accum, mesh=mesh,
                               deterministic=deterministic), shardings, mesh,
      compiler_options=FAST_COMPILE)
  history = []
  for b in batches:
    state, metrics = train_step(state, sharding.global_batch_from_process_local(b, mesh))
    history.append(jax.device_get(metrics))
  return state, history


@pytest.mark.slow
def test_one_device_and_eight_devices_give_the_same_losses():
  batches = [synthetic_batch(seed) for seed in range(5)]
  state1, hist1 = _run((1, 1, 1), batches)  # dropout on: the masks must agree too.
  state8, hist8 = _run((2, 2, 2), batches)
  for a, b in zip(hist1, hist8):
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
  assert hist1[-1]["loss"] != hist1[0]["loss"]
  for a, b in zip(jax.tree.leaves(state1["params"]), jax.tree.leaves(state8["params"])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  # The 8-device params really are distributed as LOGICAL_AXIS_RULES say.
  enc = state8["params"]["encoder"]
  word = enc["embeddings"]["word_embeddings"]["embedding"]
  assert word.sharding.spec == P("tensor", "fsdp")
  assert {s.data.shape for s in word.addressable_shards} == {(150, 16)}
  query = enc["encoder"]["layer_0"]["attention"]["self"]["query"]["kernel"]
  assert query.sharding.spec == P("fsdp", "tensor")
  assert {s.data.shape for s in query.addressable_shards} == {(16, 1, 16)}
  assert enc["encoder"]["layer_0"]["output"]["LayerNorm"]["scale"].sharding.spec == P("fsdp")
  mu = state8["opt_state"][1][0].mu["encoder"]["encoder"]["layer_0"]["intermediate"]["dense"]
  assert mu["kernel"].sharding.spec == P("fsdp", "tensor")


BIG = synthetic_batch(7, batch_size=16)


@pytest.fixture(scope="module")
def big_batch_step():
  """One deterministic float32 step on a 16-example batch, one device."""
  return _run((1, 1, 1), [BIG], deterministic=True)


def test_gradient_accumulation_equals_the_big_batch_step(big_batch_step):
  big = BIG
  state_big, hist_big = big_batch_step
  state_acc, hist_acc = _run((2, 2, 1), [big], grad_accum=4, deterministic=True)
  for key in ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy", "grad_norm"):
    assert hist_big[0][key] == pytest.approx(hist_acc[0][key], abs=1e-5), key
  for a, b in zip(jax.tree.leaves(state_big), jax.tree.leaves(state_acc)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  # Microbatches have unequal numbers of masked tokens, so averaging per-microbatch
  # normalised losses would NOT give this; the weights really differ:
  w = big["masked_lm_weights"].reshape(4, 4, -1, order="F").sum(axis=(1, 2))
  assert len(set(w.tolist())) > 1


def test_loss_is_berts_weighted_masked_lm_plus_nsp():
  model = models.BertForPreTraining(tiny_bert_config())
  params = models.init_params(model, jax.random.PRNGKey(3))
  batch = synthetic_batch(11)
  mlm_logits, nsp_logits = jax.jit(lambda p, b: model.apply(
      {"params": p}, b["input_ids"], b["segment_ids"], b["input_mask"],
      b["masked_lm_positions"], deterministic=True))(params, batch)
  # Reference: run_pretraining.py's get_masked_lm_output / get_next_sentence_output in numpy.
  logp = np.asarray(jax.nn.log_softmax(np.asarray(mlm_logits, np.float64), axis=-1))
  per = -np.take_along_axis(logp, batch["masked_lm_ids"][..., None], -1)[..., 0]
  w = batch["masked_lm_weights"]
  mlm = np.sum(per * w) / (np.sum(w) + 1e-5)
  nlogp = np.asarray(jax.nn.log_softmax(np.asarray(nsp_logits, np.float64), axis=-1))
  nsp = -np.mean(nlogp[np.arange(8), batch["next_sentence_labels"]])
  acc = np.sum((np.argmax(logp, -1) == batch["masked_lm_ids"]) * w) / (np.sum(w) + 1e-5)
  sums = jax.jit(step_lib.make_eval_step(model))(params, batch)
  from biobert_jax.train import losses
  metrics = losses.metrics_from_sums(sums)
  assert float(metrics["mlm_loss"]) == pytest.approx(mlm, rel=1e-5)
  assert float(metrics["nsp_loss"]) == pytest.approx(nsp, rel=1e-5)
  assert float(metrics["loss"]) == pytest.approx(mlm + nsp, rel=1e-5)
  assert float(metrics["mlm_accuracy"]) == pytest.approx(acc, abs=1e-6)


# slow: a second compile of the big-batch step in bf16 (~15 s).
@pytest.mark.slow
def test_bf16_compute_keeps_float32_master_params(big_batch_step):
  state16, hist16 = _run((1, 1, 1), [BIG], deterministic=True, dtype=jnp.bfloat16)
  _, hist32 = big_batch_step
  assert {x.dtype for x in jax.tree.leaves(state16["params"])} == {jnp.dtype(jnp.float32)}
  assert hist16[0]["loss"] == pytest.approx(hist32[0]["loss"], abs=0.05)
  assert hist16[0]["loss"] != hist32[0]["loss"]  # it really computed in bf16
  assert all(h["is_finite"] for h in hist16)


def _flops(jitted, *args):
  cost = jitted.lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def test_frozen_params_get_no_gradient_and_their_backward_is_dropped():
  # Head-only training (the main job's first stage): the step cuts the encoder's gradient,
  # so XLA drops its backward pass; what trains and how it trains stays the same.
  model = models.BertForPreTraining(tiny_bert_config())
  params = models.init_params(model, jax.random.key(0))
  trainable = (r"^cls/",)
  tx, schedule = optim.make_optimizer(dict(OPT, trainable=trainable))
  state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0),
           "rng": jax.random.PRNGKey(1)}
  batch = jax.tree.map(jnp.asarray, synthetic_batch(0))
  cut = jax.jit(step_lib.make_train_step(model, tx, schedule, trainable=trainable))
  full = jax.jit(step_lib.make_train_step(model, tx, schedule))  # optimiser mask only
  for _ in range(2):  # the second step sees Adam moments from the first
    state_cut, m_cut = cut(state, batch)
    state_full, m_full = full(state, batch)
    assert float(m_cut["loss"]) == pytest.approx(float(m_full["loss"]), rel=1e-6)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(state_cut["params"]),
                            jax.tree.leaves(state_full["params"])):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7,
                                 err_msg=jax.tree_util.keystr(path))
    state = state_cut
  np.testing.assert_array_equal(  # frozen: bit-identical to the start
      state["params"]["encoder"]["encoder"]["layer_0"]["output"]["dense"]["kernel"],
      params["encoder"]["encoder"]["layer_0"]["output"]["dense"]["kernel"])
  # grad_norm is now the heads' gradient norm only (it included the encoder's before).
  assert 0 < float(m_cut["grad_norm"]) < float(m_full["grad_norm"])
  assert _flops(cut, state, batch) < 0.8 * _flops(full, state, batch)


def test_nsp_weight_zero_trains_on_mlm_alone():
  # RoBERTa-style continuation: with nsp_weight=0 the NSP classifier gets no gradient and
  # the step follows the gradient of the MLM loss alone (checked against jax.grad of it).
  model = models.BertForPreTraining(tiny_bert_config())
  params = models.init_params(model, jax.random.key(0))
  batch = jax.tree.map(jnp.asarray, synthetic_batch(0))
  tx = optax.sgd(1.0)
  schedule = lambda step: jnp.float32(1.0)  # noqa: E731
  state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0),
           "rng": jax.random.PRNGKey(1)}
  new, metrics = jax.jit(step_lib.make_train_step(model, tx, schedule, deterministic=True,
                                                  nsp_weight=0.0))(state, batch)

  def mlm_loss(p):
    mlm_logits, _ = model.apply({"params": p}, batch["input_ids"], batch["segment_ids"],
                                batch["input_mask"], batch["masked_lm_positions"],
                                deterministic=True)
    sums = losses.mlm_sums(mlm_logits, batch["masked_lm_ids"], batch["masked_lm_weights"])
    return sums["mlm_nll"] / (sums["mlm_weight"] + losses.MLM_WEIGHT_EPS)

  grads = jax.grad(mlm_loss)(params)
  expected = jax.tree.map(lambda p, g: p - g, params, grads)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(new["params"]),
                          jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))
  nsp = jax.tree.leaves(new["params"]["cls"]["seq_relationship"])
  assert all(np.array_equal(a, b) for a, b in
             zip(nsp, jax.tree.leaves(params["cls"]["seq_relationship"])))
  assert float(metrics["nsp_loss"]) > 0  # still measured, only not optimised


def test_split_train_step_is_the_one_program_step_with_the_update_compiled_once():
  """finetune's train step: a gradient program per batch shape, one update program."""
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  tx, schedule = optim.make_optimizer(OPT)
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32), "b": jnp.zeros((3,))}
  specs = {"w": P(None, None), "b": P(None)}

  def loss_fn(p, batch, drop_rng):
    x = batch["x"] * jax.random.bernoulli(drop_rng, 0.8, batch["x"].shape) / 0.8
    logits = (x @ p["w"] + p["b"]).mean(axis=1)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, {"accuracy": jnp.mean(logits.argmax(-1) == batch["label"])}

  def batch(n, seed):
    r = np.random.default_rng(seed)
    return {"x": r.normal(size=(4, n, 6)).astype(np.float32),
            "attention_mask": np.ones((4, n), np.int32),
            "label": r.integers(0, 3, 4).astype(np.int32)}

  batches = [batch(n, seed) for seed, n in enumerate((5, 9, 5, 9, 5))]
  state, shardings = state_lib.state_from_params(params, specs, tx, mesh, seed=0)
  split = step_lib.make_finetune_step(loss_fn, tx, schedule, shardings, mesh)
  assert isinstance(split, ahead.SplitTrainStep)
  assert split.compile_ahead((ahead.abstract(state),),
                             [ahead.abstract(b) for b in batches[:2]], 2) == 2
  fused = step_lib.make_finetune_step(loss_fn, tx, schedule, shardings, mesh, split=False)
  state_fused, _ = state_lib.state_from_params(params, specs, tx, mesh, seed=0)
  for b in batches:
    state, metrics = split(state, b)
    state_fused, metrics_fused = fused(state_fused, b)
    metrics, metrics_fused = jax.device_get((metrics, metrics_fused))
    assert metrics.keys() == metrics_fused.keys() == {
        "loss", "accuracy", "num_tokens", "grad_norm", "learning_rate", "is_finite"}
    for k in metrics:
      np.testing.assert_allclose(metrics[k], metrics_fused[k], rtol=1e-5, err_msg=k)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state_fused)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
  assert int(state["step"]) == len(batches) and metrics["loss"] != 0
  assert split.on_demand == 0 and split.num_compiled == 2 and split.update.num_compiled == 1
