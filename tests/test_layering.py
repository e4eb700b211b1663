"""The layering rules: the core imports no TensorFlow and no data_pipeline; no import
runs up from the core to tasks or trainers; data_pipeline has no import circles.

The module-loading checks run in a fresh interpreter, since this pytest process has TF
loaded already; the import-graph checks read the source.
"""
import ast
import pathlib
import subprocess
import sys

CORE = ["biobert_jax", "biobert_jax.fs", "biobert_jax.tree", "biobert_jax.config",
        "biobert_jax.models",
        "biobert_jax.sharding", "biobert_jax.checkpoints", "biobert_jax.checkpoints.surgery",
        "biobert_jax.checkpoints.manager", "biobert_jax.checkpoints.native",
        "biobert_jax.train", "biobert_jax.train.loop", "biobert_jax.train.step",
        "biobert_jax.train.state", "biobert_jax.train.optim",
        "biobert_jax.train.metrics_writer", "biobert_jax.metrics", "biobert_jax.metrics.ner",
        "biobert_jax.metrics.re", "biobert_jax.metrics.bioasq",
        "biobert_jax.metrics.qa_decoding", "biobert_jax.runtime",
        "biobert_jax.runtime.ahead", "biobert_jax.plan.planner", "biobert_jax.plan.search",
        "biobert_jax.configs", "biobert_jax.configs.checks", "biobert_jax.configs.optim",
        "biobert_jax.configs.overrides"]
FORBIDDEN = ("tensorflow", "tensorflow_text", "tensorflow_datasets", "data_pipeline",
             "experiments")

_PROBE = """
import importlib, sys
for name in sys.argv[1:]:
  importlib.import_module(name)
  bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({forbidden!r}))
  if bad:
    print(name, 'loads', bad); sys.exit(1)
"""


def _probe(modules, forbidden):
  code = _PROBE.format(forbidden=forbidden)
  return subprocess.run([sys.executable, "-c", code, *modules], capture_output=True,
                        text=True, timeout=300, check=False)


def test_core_imports_no_tensorflow_nor_data_pipeline():
  proc = _probe(CORE, FORBIDDEN)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_the_probe_can_fail():
  # A module that is forbidden to itself: fails without paying TensorFlow's import time.
  proc = _probe(["json"], ("json",))
  assert proc.returncode == 1 and "json loads ['json']" in proc.stdout


def test_data_pipeline_does_not_import_the_library():
  # Beyond the config, data_pipeline may use the file-system layer (biobert_jax.fs: every
  # path, local or gs://, is read through one module; it imports neither TF nor JAX).
  modules = ["data_pipeline.tokenization", "data_pipeline.pretraining",
             "data_pipeline.tasks.ner", "data_pipeline.corpora"]
  code = ("import importlib, sys\n"
          "for name in sys.argv[1:]: importlib.import_module(name)\n"
          "bad = sorted(m for m in sys.modules if m.startswith('biobert_jax') and "
          "m not in ('biobert_jax', 'biobert_jax.config', 'biobert_jax.fs'))\n"
          "print(bad); sys.exit(1 if bad else 0)\n")
  proc = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True,
                        text=True, timeout=300, check=False)
  assert proc.returncode == 0, f"data_pipeline loads {proc.stdout.strip()} {proc.stderr[-2000:]}"


# What the accelerator image lacks (experiments/benchmarks/device_check.sh): annotation and
# the Python tokenizer face must load without them; TensorFlow only for the in-graph face.
GPU_IMAGE_LACKS = ("tensorflow", "tensorflow_text", "tensorflow_datasets", "ml_collections")


def test_annotate_and_python_tokenizer_load_without_tensorflow():
  proc = _probe(["data_pipeline.tokenization", "biobert_jax.trainers.model_dir",
                 "biobert_jax.trainers.annotate", "experiments.annotate",
                 "biobert_jax.distributed"], GPU_IMAGE_LACKS)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


# ---- static import graph: circles and upward imports -------------------------------------
# Read from the source (module- and function-level imports alike: a lazy import that runs
# back up is still a circle), so these checks cost no interpreter start.

_ROOT = pathlib.Path(__file__).resolve().parent.parent


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
  parts = list(path.relative_to(root).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(root: pathlib.Path, package: str) -> dict[str, set[str]]:
  """{module: the modules of `package` it imports}. `from P import x` counts as P.x when
  that is a module of the package, else as P."""
  files = {_module_name(p, root): p for p in (root / package).rglob("*.py")}
  graph: dict[str, set[str]] = {}
  for name, path in files.items():
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
      if isinstance(node, ast.Import):
        targets.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
          here = name.split(".") if is_package else name.split(".")[:-1]
          base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
        targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                       for a in node.names)
    graph[name] = {t for t in targets if t in files and t != name}
  return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The import circles: strongly connected components of more than one module."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  on_stack: set[str] = set()
  found: list[list[str]] = []

  def visit(v: str) -> None:
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def test_data_pipeline_has_no_import_circles():
  assert _cycles(_import_graph(_ROOT, "data_pipeline")) == []


def test_the_circle_check_can_fail(tmp_path):
  pkg = tmp_path / "pkg"
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "a.py").write_text("from pkg import b\n")
  (pkg / "b.py").write_text("def f():\n  from pkg import a\n")  # lazy, still a circle
  (pkg / "c.py").write_text("import pkg.a\n")
  assert _cycles(_import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]


# The library's tiers, lowest first: a module may import its own tier and the ones below.
# The planner compiles the trainers' own programs, so it is wiring, as the trainers are.
# The presets name the default data files (data_pipeline.paths), as the tasks do.
_TIERS = (("core",), ("biobert_jax.tasks", "biobert_jax.configs.pretrain",
                      "biobert_jax.configs.finetune"),
          ("biobert_jax.trainers", "biobert_jax.plan.planner", "biobert_jax.plan.search"))


def _tier(module: str) -> int:
  for i, prefixes in enumerate(_TIERS[1:], start=1):
    if any(module == p or module.startswith(p + ".") for p in prefixes):
      return i
  return 0


def test_no_import_runs_up_the_library():
  """Core (models, train, checkpoints, metrics, runtime, plan's readers, ...) imports
  neither tasks nor trainers; tasks do not import trainers."""
  graph = _import_graph(_ROOT, "biobert_jax")
  upward = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                  if _tier(t) > _tier(m))
  assert upward == []
  assert _tier("biobert_jax.trainers.model_dir") > _tier("biobert_jax.tasks.ner") > _tier(
      "biobert_jax.train.step")  # the rule itself can tell the tiers apart
  assert _tier("biobert_jax.plan.planner") > _tier("biobert_jax.plan.hlo")
