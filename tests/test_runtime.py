"""The one switch: CPU keeps its tuned machinery, TPU and GPU get the standard program."""
import jax
import numpy as np
import pytest

from biobert_jax import runtime
from biobert_jax.models import dropout as dropout_lib
from biobert_jax.runtime import ahead


def test_cpu_picks_the_tricks_and_accelerators_the_plain_step():
  cpu = runtime.for_platform("cpu")
  assert cpu.keep_host_buffers and cpu.split_train_step and cpu.compile_ahead
  assert cpu.dropout_hash and not cpu.save_named_activations
  for name in ("tpu", "gpu", "cuda", "rocm"):
    rt = runtime.for_platform(name)
    assert not (rt.keep_host_buffers or rt.split_train_step or rt.compile_ahead
                or rt.dropout_hash), name
    assert rt.persistent_cache and rt.save_named_activations
  assert runtime.for_devices(jax.devices()[:1]).platform == "cpu"
  with pytest.raises(ValueError, match="unknown platform 'npu'"):
    runtime.for_platform("npu")


def test_host_platform_follows_jax_platforms(monkeypatch):
  monkeypatch.setattr(runtime, "_configured_platforms", lambda: "tpu,cpu")
  assert runtime.host_platform() == "tpu"
  monkeypatch.setattr(runtime, "_configured_platforms", lambda: "cuda")
  assert runtime.host_platform() == "gpu"
  monkeypatch.setattr(runtime, "_configured_platforms", lambda: "")
  assert runtime.host_platform() == "cpu"  # no TPU on PCI, no NVIDIA device here


def _jaxpr_text(fn, *args):
  return str(jax.make_jaxpr(fn)(*args))  # nested jaxprs (jit, pjit) included


def test_dropout_draws_the_same_mask_by_hash_on_cpu_and_by_jax_random_elsewhere():
  key, shape = jax.random.key(7), (4, 8, 16)

  def mask():
    return dropout_lib.keep_mask(key, shape, 0.1)

  by_platform = {}
  for name in ("cpu", "tpu"):
    rt = runtime.for_platform(name)
    traced = rt.traced(mask)
    text = _jaxpr_text(traced)
    # jax.random lowers through the threefry2x32 primitive; the hash is plain integer ops.
    assert ("threefry2x32" in text or "random_bits" in text) == (name == "tpu"), name
    by_platform[name] = np.asarray(jax.jit(traced)())
  np.testing.assert_array_equal(by_platform["cpu"], by_platform["tpu"])


def test_the_runtime_reaches_a_trace_in_a_compile_thread():
  """SplitTrainStep compiles in worker threads: the runtime travels inside the traced
  function, not in the caller's context."""
  tpu = runtime.for_platform("tpu")
  seen = []

  def fn(x):
    seen.append(runtime.current().platform)
    return x + 1

  step = ahead.CompiledByShape(jax.jit(tpu.traced(lambda w, b: fn(b["x"]) * w)))
  batch = {"x": jax.ShapeDtypeStruct((2,), np.float32)}
  step.compile_ahead((jax.ShapeDtypeStruct((), np.float32),), [batch], threads=1)
  step.wait()
  assert seen == ["tpu"]
  assert runtime.current().platform == jax.default_backend()
