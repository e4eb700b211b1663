r"""Plans a training run for a TPU topology (or N host devices) without the hardware.

  python -m experiments.plan --config=experiments/configs/pretrain.py:base \
      --topology=v5e:4x4 --config.batch_size=256 --config.remat=True --output=plan.json

Compiles the trainer's own step (biobert_jax.plan; deviceless through libtpu for TPU
topologies: v4:2x2x1, v5e:4x4, v5e:16x16, v5p:2x2x2, ...; several slices as 2xv5e:16x16,
with --config.mesh.data a multiple of the slices; cpu:N for N host devices) and
prints memory per device against HBM, the collectives, FLOPs and a roofline step time.
--search lists the meshes / remat / micro-batch settings that fit, fastest estimate first.

Exit status: 0 compiled and fits; 3 compiled but does not fit, or the compiler refused for
memory (one line says what and by how much); any other non-zero on an error.
"""
import sys


def _topology_from_argv(argv: list[str]) -> str | None:
  for i, a in enumerate(argv):
    if a.startswith("--topology="):
      return a.split("=", 1)[1]
    if a == "--topology" and i + 1 < len(argv):
      return argv[i + 1]
  return None


# libtpu must be kept deviceless and off the network before JAX loads.
_TOPOLOGY = _topology_from_argv(sys.argv)
if _TOPOLOGY:
  from biobert_jax.plan import env as _topology_env  # no jax import
  try:
    _topology_env.apply_deviceless_env(_TOPOLOGY)
  except ValueError:
    pass  # reported by main with the flag's name

import json  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from biobert_jax.plan import planner, search  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "A trainer's config file:preset.",
                                          lock_config=True)
_TOPOLOGY_FLAG = flags.DEFINE_string(
    "topology", None, "v4:2x2x1, v5e:4x4, 2xv5e:16x16 (two slices), ..., h100:8 or cpu:N.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the plan as JSON here.")
_SEARCH = flags.DEFINE_bool("search", False, "Search meshes, remat and micro-batches.")
_SEARCH_COMPILE = flags.DEFINE_integer("search_compile", 3,
                                       "--search: compile this many best candidates.")


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  try:
    if _SEARCH.value:
      result = search.search(_CONFIG.value, _TOPOLOGY_FLAG.value,
                             compile_top=_SEARCH_COMPILE.value)
    else:
      result = planner.plan(_CONFIG.value, _TOPOLOGY_FLAG.value)
  except ValueError as e:  # a bad topology, mesh or config: one line, not a traceback
    print(f"plan: error: {e}", file=sys.stderr, flush=True)
    return 2
  print((search if _SEARCH.value else planner).table(result), flush=True)
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2, sort_keys=True, default=float)
      f.write("\n")
  if not result["fits"]:
    line = (planner.fits_line(result) if not _SEARCH.value
            else f"does not fit: no searched configuration fits {_TOPOLOGY_FLAG.value}")
    print(line, file=sys.stderr, flush=True)
    return 3
  return 0


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "topology"])
  app.run(lambda argv: sys.exit(main(argv)))
