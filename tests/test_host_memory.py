"""host_memory: XLA:CPU's per-run temp buffer stops being faulted in on every run."""
import json
import os
import subprocess
import sys

import pytest

from biobert_jax.runtime import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A program with one 64 MiB intermediate (a dot result two reductions read, so XLA keeps it
# in the temp buffer), run repeatedly;
# prints whether the settings took effect and the page faults per run after two warm-ups.
_PROGRAM = r"""
import json, resource
from biobert_jax.runtime import host_memory
applied = host_memory.keep_host_buffers()
import jax, jax.numpy as jnp
from jax._src import xla_bridge

@jax.jit
def f(a, b):
  c = jnp.tanh(a @ b)
  return jnp.sum(c, axis=0) + jnp.sum(c, axis=1)

a = jnp.ones((4096, 8), jnp.float32); b = jnp.ones((8, 4096), jnp.float32) / 8
for _ in range(2):
  out = f(a, b).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
  out = f(a, b).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
print(json.dumps({"applied": applied, "faults_per_run": faults, "sum": float(out.sum()),
                  "async": xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value}))
"""


def _run(mode: str) -> dict:
  env = dict(os.environ, **{host_memory.ENV_VAR: mode, "JAX_PLATFORMS": "cpu"})
  env.pop("XLA_FLAGS", None)  # one host device: a single-device program runs inline
  out = subprocess.run([sys.executable, "-c", _PROGRAM], env=env, cwd=ROOT, check=True,
                       capture_output=True, text=True, timeout=300)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(host_memory._glibc_mallopt() is None,
                    reason="mallopt is glibc's; elsewhere the call is a no-op")
def test_kept_buffers_are_not_faulted_in_again_each_run():
  system, kept = _run("system"), _run("kept")
  assert not system["applied"] and system["async"]
  assert kept["applied"] and not kept["async"]
  assert kept["sum"] == system["sum"]  # the allocator does not change the arithmetic
  # glibc's defaults: the 64 MiB buffer is mmapped and unmapped each run (16k pages).
  assert system["faults_per_run"] > 8000, system
  assert kept["faults_per_run"] < system["faults_per_run"] / 10, (kept, system)


def test_does_nothing_once_backends_exist():
  import jax
  jax.numpy.zeros(1).block_until_ready()  # the backends of this pytest process exist now
  assert not host_memory.keep_host_buffers()
  host_memory.release_free_memory()  # a no-op when nothing was applied
