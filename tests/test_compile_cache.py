"""compile_cache.use_persistent_cache: where the mains' XLA cache goes, and that a second
process is served from it.

Each case runs in a fresh interpreter: JAX's cache settings are process-wide, and conftest
exports its own JAX_COMPILATION_CACHE_DIR, which these cases must not inherit.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PROBE = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp
    from biobert_jax.runtime import compile_cache
    hits = []
    jax.monitoring.register_event_listener(
        lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None)
    used = compile_cache.use_persistent_cache()
    out = {"used": used, "config": jax.config.jax_compilation_cache_dir,
           "max_size": jax.config.jax_compilation_cache_max_size}
    if used and len(sys.argv) > 1:
      jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
      jax.jit(lambda x: jnp.sin(x) * 3 + jnp.cos(x)).lower(jnp.ones((7, 5))).compile()
      out["hits"] = len(hits)
    print(json.dumps(out))
""")


def _probe(tmp_path: Path, compile_one: bool = False, **env: str) -> dict:
  child = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "BIOBERT_JAX_COMPILATION_CACHE")}
  child.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), JAX_PLATFORMS="cpu", **env)
  proc = subprocess.run([sys.executable, "-c", _PROBE] + (["compile"] if compile_one else []),
                        cwd=ROOT, env=child, capture_output=True, text=True, timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_default_directory_is_used_and_serves_a_second_process(tmp_path):
  expected = str(tmp_path / "xdg" / "biobert_jax" / "xla")
  first = _probe(tmp_path, compile_one=True)
  assert first["used"] == first["config"] == expected
  assert first["max_size"] > 0  # bounded (filelock comes with the test stack)
  assert first["hits"] == 0
  assert any(Path(expected).iterdir()), "the compiled program was not written"
  second = _probe(tmp_path, compile_one=True)
  assert second["hits"] >= 1  # the program above (and the jnp.ones it lowers with)


def test_off_and_explicit_choices(tmp_path):
  off = _probe(tmp_path, BIOBERT_JAX_COMPILATION_CACHE="off")
  assert off["used"] is None and off["config"] is None
  assert not (tmp_path / "xdg").exists()

  chosen = tmp_path / "mine"
  mine = _probe(tmp_path, BIOBERT_JAX_COMPILATION_CACHE=str(chosen))
  assert mine["used"] == str(chosen) and chosen.is_dir()
  assert mine["max_size"] > 0  # bounded and locked like the default one

  jax_own = _probe(tmp_path, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_own"),
                   BIOBERT_JAX_COMPILATION_CACHE=str(chosen))
  assert jax_own["used"] == str(tmp_path / "jax_own")


def test_unusable_directory_is_skipped_not_fatal(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  out = _probe(tmp_path, BIOBERT_JAX_COMPILATION_CACHE=str(blocker / "cache"))
  assert out["used"] is None and out["config"] is None


_CORRUPT = textwrap.dedent("""
    import glob, json, os, sys, warnings
    import jax, jax.numpy as jnp
    from biobert_jax.runtime import compile_cache
    compile_cache.use_persistent_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    fn = lambda x: jnp.tanh(x) * 5 - jnp.exp(x)
    if sys.argv[1] == "corrupt":
      for path in glob.glob(os.path.join(jax.config.jax_compilation_cache_dir, "*-cache")):
        with open(path, "wb") as f:
          f.write(b"not an executable")
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      jax.jit(fn).lower(jnp.ones((3, 9))).compile()
    print(json.dumps({"warned": sum("Error reading persistent" in str(w.message)
                                    for w in caught)}))
""")


def test_a_corrupted_entry_is_replaced_not_warned_about_forever(tmp_path):
  env = {k: v for k, v in os.environ.items()
         if k not in ("JAX_COMPILATION_CACHE_DIR", "BIOBERT_JAX_COMPILATION_CACHE")}
  env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), JAX_PLATFORMS="cpu")

  def run(mode):
    proc = subprocess.run([sys.executable, "-c", _CORRUPT, mode], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])

  assert run("fill")["warned"] == 0
  assert run("corrupt")["warned"] >= 1  # found, warned, compiled, stored again
  assert run("again")["warned"] == 0    # the replaced entry reads
