"""The trainer mains' absl flag parser: `--config.mesh=auto` (docs/planning.md, "Choosing
the mesh in the trainers").

ml_collections cannot set a ConfigDict field from a string, so the spelling is rewritten
to `--config.mesh.auto=true` before it parses; any other value of `--config.mesh` stops
with one line naming the accepted spellings.
"""
from __future__ import annotations

import re
import sys

from absl import app

ACCEPTED = ("--config.mesh=auto, --config.mesh.auto=true, or the axes "
            "--config.mesh.data/fsdp/tensor=N")
_MESH = re.compile(r"^--?config\.mesh(?:=(.*))?$")


class MeshFlagError(ValueError):
  """`--config.mesh=` given a value other than auto."""


def rewrite(argv: list[str]) -> list[str]:
  """argv with `--config.mesh=auto` (or `--config.mesh auto`) as
  `--config.mesh.auto=true`; arguments after `--` are left alone.

  Raises:
    MeshFlagError: `--config.mesh` with another value, naming the accepted spellings.
  """
  out: list[str] = []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg == "--":
      out.extend(argv[i:])
      break
    m = _MESH.match(arg)
    if not m or (m.group(1) is None and i + 1 >= len(argv)):
      out.append(arg)
      i += 1
      continue
    value = m.group(1)
    if value is None:  # `--config.mesh auto`
      i += 1
      value = argv[i]
    if value.strip().lower() != "auto":
      raise MeshFlagError(f"--config.mesh={value!r}: not a mesh; accepted: {ACCEPTED}")
    out.append("--config.mesh.auto=true")
    i += 1
  return out


def parse_flags(argv: list[str]) -> list[str]:
  """`app.run(main, flags_parser=parse_flags)`: absl's parser after `rewrite`. sys.argv
  is rewritten too: ml_collections finds its override flags there."""
  try:
    rewritten = rewrite(list(argv))
  except MeshFlagError as e:
    sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
    sys.exit(1)
  if list(argv) == sys.argv:
    sys.argv[:] = rewritten
  return app.parse_flags_with_usage(rewritten)


__all__ = ["parse_flags", "rewrite", "MeshFlagError", "ACCEPTED"]
