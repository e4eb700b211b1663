"""What a compiled executable says about itself: memory per device and collectives.

`memory(compiled)` reads `compiled.memory_analysis()` (the compiler's own figures);
`collectives(hlo_text)` reads the optimized per-device HLO (`compiled.as_text()`).
A collective's bytes are the size of its result on one device (what arrives there), times
how often it runs: a collective inside a while loop with a known trip count (a scanned
layer stack, gradient accumulation) counts that many times.
"""
from __future__ import annotations

import collections
import re
from typing import Any

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "s16": 2, "u16": 2,
          "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8,
          "c64": 8, "c128": 16}
_SHAPE = re.compile(r"\b([a-z]+\d*[a-z0-9]*)\[([\d,]*)\]")
_OP = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+(" + "|".join(KINDS)
                 + r")(-start)?\(")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")  # unindented headers
_WHILE = re.compile(r"\bwhile\(.*\bcondition=%?([\w.\-]+), body=%?([\w.\-]+)")
_CONST = re.compile(r"s32\[\]\S*\s+constant\((\d+)\)")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_CALLS = re.compile(r"\b(?:to_apply|calls|body|condition|branch_computations)=\{?%?([\w.\-, %]+)\}?")


def shape_bytes(text: str) -> list[int]:
  """Bytes of each array shape in an HLO type string, e.g. `(f32[8,4]{1,0}, bf16[2])`."""
  out = []
  for dtype, dims in _SHAPE.findall(text):
    if dtype not in _BYTES:
      continue
    n = 1
    for d in filter(None, dims.split(",")):
      n *= int(d)
    out.append(n * _BYTES[dtype])
  return out


def _trip_count(while_line: str, condition: list[str]) -> int:
  """A while loop's trip count: XLA's known_trip_count when given (GPU, CPU), else the
  bound of a scan's condition `i < N` (TPU keeps no annotation): its one s32 constant."""
  t = _TRIP.search(while_line)
  if t:
    return int(t.group(1))
  consts = [int(c) for line in condition for c in _CONST.findall(line)]
  return consts[0] if len(consts) == 1 and any("direction=LT" in l for l in condition) else 1


def _multipliers(lines: list[str]) -> dict[str, int]:
  """Computation name -> how many times one step runs it (while trip counts, nested)."""
  parent: dict[str, tuple[str, int]] = {}
  bodies: dict[str, list[str]] = collections.defaultdict(list)
  current = None
  for line in lines:
    m = _COMPUTATION.match(line)
    if m:
      current = m.group(1)
    elif current is not None:
      bodies[current].append(line)
  current = None
  for line in lines:
    m = _COMPUTATION.match(line)
    if m:
      current = m.group(1)
      continue
    if current is None:
      continue
    w = _WHILE.search(line)
    if w:
      parent[w.group(2)] = (current, _trip_count(line, bodies.get(w.group(1), [])))
      parent.setdefault(w.group(1), (current, 1))
      continue
    for c in _CALLS.findall(line):
      for name in c.replace("%", "").split(","):
        name = name.strip()
        if name and name not in parent:
          parent[name] = (current, 1)

  def times(name: str, depth: int = 0) -> int:
    if name not in parent or depth > 50:
      return 1
    up, n = parent[name]
    return n * times(up, depth + 1)

  return {name: times(name) for name in parent}


def collectives(hlo_text: str) -> dict[str, dict[str, int]]:
  """{kind: {"count", "bytes", "static_count"}} over the HLO module, per device per step.

  `static_count` is how many ops the program text holds; `count` and `bytes` weigh each
  by its loop trip count. For async pairs (`-start`/`-done`) the start is counted once and
  its bytes are those of the result (the second half of an all-gather-start's tuple).
  TPU writes a reduce-scatter as an all-reduce inside an `all-reduce-scatter` fusion: it
  counts as a reduce-scatter, with the bytes of the unscattered operand."""
  lines = hlo_text.splitlines()
  mult = _multipliers(lines)
  out: dict[str, dict[str, int]] = collections.defaultdict(
      lambda: {"count": 0, "bytes": 0, "static_count": 0})
  current = None
  for line in lines:
    m = _COMPUTATION.match(line)
    if m:
      current = m.group(1)
      continue
    op = _OP.match(line)
    if not op:
      continue
    result, kind, start = op.group(1), op.group(2), op.group(3)
    if kind == "all-reduce" and current and current.startswith("all-reduce-scatter"):
      kind = "reduce-scatter"  # TPU's reduce-scatter: an all-reduce fused with its slice
    sizes = shape_bytes(result)
    if start and kind in ("all-gather", "collective-permute") and len(sizes) >= 2:
      sizes = sizes[len(sizes) // 2:]
    n = mult.get(current, 1)
    entry = out[kind]
    entry["static_count"] += 1
    entry["count"] += n
    entry["bytes"] += n * sum(sizes)
  return {k: dict(v) for k, v in sorted(out.items())}


def memory(compiled: Any) -> dict[str, int]:
  """Per-device bytes from the compiler: arguments, temporaries, outputs, aliased (outputs
  written into donated arguments), generated code, and total = arguments + temporaries +
  outputs - aliased + code (what the device holds at the step's peak)."""
  stats = compiled.memory_analysis()
  if stats is None:
    raise ValueError("the compiler gave no memory analysis for this executable")
  out = {"arguments": int(stats.argument_size_in_bytes),
         "temporaries": int(stats.temp_size_in_bytes),
         "outputs": int(stats.output_size_in_bytes),
         "aliased": int(stats.alias_size_in_bytes),
         "code": int(stats.generated_code_size_in_bytes)}
  out["total"] = (out["arguments"] + out["temporaries"] + out["outputs"] - out["aliased"]
                  + out["code"])
  return out


__all__ = ["collectives", "memory", "shape_bytes", "KINDS"]
