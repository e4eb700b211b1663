"""Reading a compiled program: its collectives, its largest arrays and its memory figures.

All three read what the compiler produced for ONE device (`compiled.as_text()` is the
partitioned per-device module, `memory_analysis()` the per-device buffers), so they show
what a device really holds and moves, whatever the sharding annotations asked for.

`collectives` counts by kind (all-reduce, all-gather, reduce-scatter, all-to-all,
collective-permute). An async pair (`all-gather-start`/`-done`) counts once, at its done;
an op inside a `while` body counts once per iteration when the loop's trip count is known
(a scanned layer stack runs its body num_layers times; on TPU, whose HLO has no trip
count, the bound of the loop's `i < N` condition). `bytes` is the per-device buffer
each op moves per step: its result for all-reduce, all-gather, all-to-all and
collective-permute; its input (result x group size) for reduce-scatter. The TPU
compiler's reduce-scatter, an `all-reduce-scatter` fusion around an all-reduce, counts as
a reduce-scatter.
"""
from __future__ import annotations

import collections
import math
import re
from typing import Any

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")

_DTYPE_BYTES = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1,
                "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4,
                "f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16}
_ARRAY = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([0-9,]*)\]")
# `%name = <result type> opcode(`: the result type is an array or a (nested) tuple.
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%(\S+)\s*=\s*(.*?)\s([a-z][a-z0-9-]*)\(")
_COMPUTATION = re.compile(r"^(ENTRY\s+)?%(\S+)\s.*\{\s*$")
# The TPU compiler writes a reduce-scatter as a fusion calling a computation of this name
# (an all-reduce whose result is dynamic-sliced to the device's shard, done as one op).
_TPU_REDUCE_SCATTER = "all-reduce-scatter"
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_CONST = re.compile(r"s32\[\]\S*\s+constant\((\d+)\)")


def _arrays(type_text: str) -> list[tuple[str, tuple[int, ...]]]:
  return [(dt, tuple(int(d) for d in dims.split(",") if d))
          for dt, dims in _ARRAY.findall(type_text)]


def _nbytes(dtype: str, shape: tuple[int, ...]) -> int:
  return int(math.prod(shape) * _DTYPE_BYTES[dtype])


def _group_size(line: str) -> int:
  """Devices in one replica group: `{{0,1},{2,3}}`, `[2,4]<=[8]` or `mesh['a'=2,'b'=4] {'b'}`."""
  m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", line)
  if m:
    sizes = dict((k.strip("' "), int(v)) for k, v in
                 (kv.split("=") for kv in m.group(1).split(",") if "=" in kv))
    return math.prod(sizes.get(a.strip("' "), 1) for a in m.group(2).split(",") if a.strip())
  m = re.search(r"replica_groups=\[\d+,(\d+)\]<=", line)
  if m:
    return int(m.group(1))
  m = re.search(r"replica_groups=\{\{([^}]*)\}", line)
  if m:
    return len(m.group(1).split(","))
  return 1


def _parse(hlo_text: str) -> tuple[dict[str, list[str]], str | None]:
  """Instruction lines by computation name, and the entry computation's name."""
  comps: dict[str, list[str]] = {}
  entry, current = None, None
  for line in hlo_text.splitlines():
    m = _COMPUTATION.match(line)
    if m and "=" not in line.split("(")[0]:
      current = m.group(2)
      comps[current] = []
      if m.group(1):
        entry = current
    elif current is not None and line.strip() == "}":
      current = None
    elif current is not None:
      comps[current].append(line)
  return comps, entry


def _trip_count(line: str, comps: dict[str, list[str]]) -> int:
  """A while loop's trip count: XLA's known_trip_count (CPU, GPU), else the bound of a
  scan's condition `i < N`, its one s32 constant (the TPU compiler keeps no annotation)."""
  m = _TRIP.search(line)
  if m:
    return int(m.group(1))
  cond = re.search(r"\bcondition=%([^,}\s]+)", line)
  body = comps.get(cond.group(1), ()) if cond else ()
  consts = [int(c) for text in body for c in _CONST.findall(text)]
  if len(consts) == 1 and any("direction=LT" in text for text in body):
    return consts[0]
  return 1


def _executions(comps: dict[str, list[str]], entry: str | None) -> dict[str, int]:
  """How many times each computation runs per call of the entry (while trip counts)."""
  if entry is None:
    return {name: 1 for name in comps}
  runs: dict[str, int] = collections.defaultdict(int)
  runs[entry] = 1
  order = [entry]
  for name in order:  # breadth first over the call graph (XLA's is acyclic).
    for line in comps.get(name, ()):
      trip = _trip_count(line, comps)
      for m in re.finditer(r"\b(calls|body|condition|to_apply|called_computations|"
                           r"branch_computations)=\{?((?:%[^,}\s]+(?:,\s*)?)+)\}?", line):
        for callee in re.findall(r"%([^,}\s]+)", m.group(2)):
          times = trip if m.group(1) == "body" else 1
          if callee not in runs:
            order.append(callee)
          runs[callee] += runs[name] * times
  return {name: max(runs.get(name, 0), 0) for name in comps}


def collectives(hlo_text: str) -> dict[str, dict[str, int]]:
  """{kind: {"count", "bytes", "ops"}} per step on one device, for every kind in KINDS.

  count: executions per step (an op in a loop body times the trip count); ops: the
  instructions in the text; bytes: per-device bytes moved per step (see the module doc).
  """
  comps, entry = _parse(hlo_text)
  runs = _executions(comps, entry)
  out = {k: {"count": 0, "bytes": 0, "ops": 0} for k in KINDS}
  for name, lines in comps.items():
    for line in lines:
      m = _INSTR.match(line)
      if not m:
        continue
      opcode = m.group(3)
      kind = opcode[:-len("-done")] if opcode.endswith("-done") else opcode
      if kind not in KINDS:
        continue  # includes the -start halves: their done is counted.
      nbytes = sum(_nbytes(dt, shape) for dt, shape in _arrays(m.group(2)))
      if kind == "reduce-scatter":
        nbytes *= _group_size(line)
      elif kind == "all-reduce" and name.startswith(_TPU_REDUCE_SCATTER):
        kind = "reduce-scatter"  # its result is the input: the bytes stay.
      times = runs.get(name, 1) or 1
      out[kind]["ops"] += 1
      out[kind]["count"] += times
      out[kind]["bytes"] += nbytes * times
  return out


def array_shapes(hlo_text: str, min_rank: int = 3) -> collections.Counter:
  """Counter of (dtype, shape) over every instruction result of rank >= `min_rank`."""
  counts: collections.Counter = collections.Counter()
  for line in hlo_text.splitlines():
    m = _INSTR.match(line)
    if m:
      for dt, shape in _arrays(m.group(2)):
        if len(shape) >= min_rank:
          counts[(dt, shape)] += 1
  return counts


def largest_arrays(hlo_text: str, top: int = 8, min_rank: int = 3) -> list[dict[str, Any]]:
  """The `top` largest distinct array results (per device), largest first."""
  rows = [{"dtype": dt, "shape": list(shape), "bytes": _nbytes(dt, shape), "count": n}
          for (dt, shape), n in array_shapes(hlo_text, min_rank).items()]
  return sorted(rows, key=lambda r: -r["bytes"])[:top]


def _batch_length_pairs(shape: tuple[int, ...], seq_len: int):
  """(batch, where) for each way `shape` reads as an activation: [B, L, ...] or
  [x, B, L, ...] (a scan's stacked [layers, B, L, H], a transposed [H, B, L]), or a
  flattened [B * L, ...] / [x, B * L, ...]."""
  for i in (0, 1):
    if i + 1 < len(shape) and shape[i + 1] == seq_len and shape[i] != seq_len:
      yield shape[i]
    if i < len(shape) and shape[i] > seq_len and shape[i] % seq_len == 0:
      yield -(shape[i] // seq_len)  # negative: read from a flattened dim.


def activations_with_batch(hlo_text: str, batch: int, seq_len: int) -> list[tuple]:
  """(dtype, shape) of the per-device arrays that hold `batch` sequences of `seq_len`:
  [batch, seq_len, ...], [x, batch, seq_len, ...], or a flattened [batch * seq_len, ...].

  Pass the GLOBAL batch: an empty list means no device holds the whole batch anywhere.
  Choose a batch and a length that no weight dimension (or product with seq_len) equals.
  """
  return sorted((dt, shape) for (dt, shape) in array_shapes(hlo_text, 2)
                if any(abs(b) == batch for b in _batch_length_pairs(shape, seq_len)))


def max_activation_batch(hlo_text: str, seq_len: int) -> int:
  """The largest batch read off any [B, L, ...] or [x, B, L, ...] array of the per-device
  program (flattened [B * L, ...] ones ignored: weights can be multiples of L). A
  heuristic for reports: reshaped attention scores [B * N, L, L] read as batch B * N."""
  best = 0
  for (_, shape) in array_shapes(hlo_text, 3):
    for b in _batch_length_pairs(shape, seq_len):
      best = max(best, b)
  return best


def memory(compiled: Any) -> dict[str, int]:
  """Per-device bytes from `compiled.memory_analysis()`: arguments, outputs, temporaries,
  aliased (outputs that reuse donated arguments), generated code, and their total
  (arguments + outputs - aliased + temporaries + code: what the device holds at the peak)."""
  m = compiled.memory_analysis()
  if m is None:
    raise ValueError("this backend gives no memory_analysis for the compiled program")
  out = {"arguments": int(m.argument_size_in_bytes), "outputs": int(m.output_size_in_bytes),
         "temporaries": int(m.temp_size_in_bytes), "aliased": int(m.alias_size_in_bytes),
         "generated_code": int(m.generated_code_size_in_bytes)}
  out["total"] = (out["arguments"] + out["outputs"] - out["aliased"] + out["temporaries"]
                  + out["generated_code"])
  return out


def flops(compiled: Any) -> float:
  """XLA's per-device FLOP count (`cost_analysis()["flops"]`). A loop body is counted
  once, not per iteration, so for a scanned stack it is not the step's FLOPs."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


def summary(compiled: Any, seq_len: int | None = None) -> dict[str, Any]:
  """memory, flops, collectives and the largest arrays of one compiled program."""
  text = compiled.as_text()
  out = {"memory": memory(compiled), "flops": flops(compiled),
         "collectives": collectives(text), "largest_arrays": largest_arrays(text)}
  if seq_len is not None:
    out["max_activation_batch"] = max_activation_batch(text, seq_len)
  return out


__all__ = ["KINDS", "collectives", "array_shapes", "largest_arrays", "activations_with_batch",
           "max_activation_batch", "memory", "flops", "summary"]
