"""The annotator's output directory: options checked before any model loads, what counts
as finished, names no other run or planted link can collide with.

* `validate_options`: the numbers and formats of an annotate run, one line per bad value.
* `prepare_output`: the directory made and probed writable, entries that are symbolic
  links refused (the output directory itself may be one: it is the user's choice).
* A finished output's `_stats/<name>.json` records its input's size and modification time
  (`fingerprint`); `stale_reason` says why an existing output must be redone (input
  replaced) or None when it stands.
* `temp_name`: `<name>.partial.<host>.<pid>`, unique per writer; `open_new` creates it
  without following links. Leftovers of dead runs are removed by `remove_partials`.
* `pubtator_id`: a document id as PubTator can hold it (no tab, newline or `|`).
"""
from __future__ import annotations

import os
import pathlib
import re
import socket
from collections.abc import Mapping

from biobert_jax import fs

PARTIAL = ".partial"


class AnnotateOptionError(ValueError):
  """A bad option of an annotate run (one line naming it)."""


def validate_options(*, batch_size: int, bucket_length: int, block_docs: int,
                     log_every_s: float, output_format: str, formats: Mapping[str, str],
                     input_format: str, input_formats: tuple[str, ...], dtype: str,
                     dtypes: tuple[str, ...] = ("float32", "bfloat16", "float16")) -> None:
  """Raises AnnotateOptionError for the first bad value, before anything is loaded."""
  for name, value in (("batch_size", batch_size), ("bucket_length", bucket_length),
                      ("block_docs", block_docs)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise AnnotateOptionError(f"--{name} must be a positive integer, got {value!r}")
  if not log_every_s > 0:
    raise AnnotateOptionError(f"--log_every_s must be > 0, got {log_every_s!r}")
  if output_format not in formats:
    raise AnnotateOptionError(f"--format must be one of {sorted(formats)}, got "
                              f"{output_format!r}")
  if input_format not in input_formats:
    raise AnnotateOptionError(f"--input_format must be one of {list(input_formats)}, got "
                              f"{input_format!r}")
  if dtype not in dtypes:
    raise AnnotateOptionError(f"--dtype must be one of {list(dtypes)}, got {dtype!r}")


def prepare_output(out: pathlib.Path, names: list[str], stats_dir: str) -> None:
  """Makes `out` (and `out/stats_dir`), checks it is writable, refuses planted links.

  Raises:
    AnnotateOptionError: naming the path that is a link, or not a writable directory.
  """
  if fs.is_remote(out):  # no links or directories on an object store: a write decides
    probe = fs.join(out, stats_dir, temp_name(".write_probe"))
    try:
      fs.write_text(probe, "ok")
      fs.remove(probe)
    except OSError as e:
      raise AnnotateOptionError(f"--output {out} is not writable ({e})") from None
    return
  if out.exists() and not out.is_dir():
    raise AnnotateOptionError(f"--output {out} exists and is not a directory")
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise AnnotateOptionError(f"--output {out}: cannot create it ({e.strerror})") from None
  stats = out / stats_dir
  checked = [stats, out / "summary.json"] + [out / n for n in names]
  checked += [stats / (n + ".json") for n in names]
  for path in checked:
    if path.is_symlink():
      raise AnnotateOptionError(f"{path} is a symbolic link; refusing to write through it "
                                "(remove it, or choose another --output)")
  try:
    stats.mkdir(exist_ok=True)
    probe = stats / temp_name(".write_probe")
    with open_new(probe) as f:
      f.write("ok")
    probe.unlink()
  except OSError as e:
    raise AnnotateOptionError(f"--output {out} is not writable ({e.strerror})") from None


def temp_name(name: str) -> str:
  return f"{name}{PARTIAL}.{socket.gethostname()}.{os.getpid()}"


def open_new(path: pathlib.Path | str, mode: str = "w"):
  """A new file opened for writing; never follows a link, never reuses a file (on an
  object store: a new object, which appears when it is closed)."""
  if fs.is_remote(path):
    return fs.open(path, mode)
  flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
  return os.fdopen(os.open(path, flags, 0o644), mode, encoding="utf-8")


def remove_partials(out: pathlib.Path, names: list[str], stats_dir: str) -> int:
  """Removes `<name>.partial*` of the given outputs (left by killed runs; this run holds
  the directory's lock, so no live writer owns them). Returns how many."""
  removed = 0
  for name in names:
    for directory, base in ((out, name), (out / stats_dir, name + ".json")):
      for path in fs.glob(fs.join(directory, glob_escape(base) + PARTIAL + "*")):
        fs.remove(path)
        removed += 1
  return removed


def glob_escape(name: str) -> str:
  return re.sub(r"([*?\[])", r"[\1]", name)


def fingerprint(path: str) -> dict:
  """What identifies an input's content cheaply: its size and modification time (an
  object's generation on a store)."""
  return {"input_size": fs.getsize(path), "input_mtime_ns": fs.version(path)}


def stale_reason(report: Mapping, input_path: str) -> str | None:
  """Why a finished output no longer matches its input, or None."""
  if "input_size" not in report:
    return None  # written before fingerprints were recorded: kept
  now = fingerprint(input_path)
  if (now["input_size"], now["input_mtime_ns"]) != (report["input_size"],
                                                    report.get("input_mtime_ns")):
    return (f"input {input_path} changed since it was annotated (size "
            f"{report['input_size']} -> {now['input_size']}, or modified)")
  return None


_PUBTATOR_UNSAFE = re.compile(r"[%|\x00-\x1f\x7f\u0085\u2028\u2029]")


def pubtator_id(doc_id: str) -> str:
  """`doc_id` with `%`, `|`, tabs, newlines and other control characters percent-encoded,
  so it can never end a PubTator field or line (PMIDs pass unchanged)."""
  return _PUBTATOR_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()),
                              doc_id)
