r"""The planner's table for BERT sizes x lengths x topologies (docs/planning.md).

  python -m experiments.benchmarks.plan_table --models=base,large --lengths=128,512 \
      --topologies=v4:2x2x1,v5e:4x4,v5e:16x16 --out_dir=work/plan_table

Runs `experiments.plan` once per cell, one at a time, in a subprocess (each compile takes
seconds to minutes on 2 cores), keeps each JSON in --out_dir (an existing one is reused),
and prints a markdown table: memory per device, fits, roofline step time and MFU.
Extra `--set=key=value` flags go to every run as `--config.key=value`.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

from absl import app, flags

_MODELS = flags.DEFINE_list("models", ["base", "large"], "Pre-training presets.")
_LENGTHS = flags.DEFINE_list("lengths", ["128", "512"], "Sequence lengths.")
_TOPOLOGIES = flags.DEFINE_list("topologies", ["v4:2x2x1", "v5e:4x4", "v5e:16x16"],
                                "Topologies.")
_OUT = flags.DEFINE_string("out_dir", "work/plan_table", "Where the JSON plans go.")
_SET = flags.DEFINE_multi_string("set", [], "key=value config overrides for every run.")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Print the table of the JSONs in "
                                 "--out_dir; compile nothing.")
_TIMEOUT = flags.DEFINE_integer("timeout", 1800, "Seconds per plan.")

# BERT's pre-training settings per length (Devlin et al.): 20 predictions at 128, 80 at 512.
PREDICTIONS = {128: 20, 512: 80}


def run_cell(model: str, length: int, topology: str, out_dir: pathlib.Path) -> dict:
  path = out_dir / f"{model}_{length}_{topology.replace(':', '_')}.json"
  if not path.exists():
    cmd = [sys.executable, "-m", "experiments.plan",
           f"--config=experiments/configs/pretrain.py:{model}", f"--topology={topology}",
           f"--config.max_seq_length={length}",
           f"--config.max_predictions_per_seq={PREDICTIONS.get(length, 20)}",
           f"--output={path}", *(f"--config.{s}" for s in _SET.value)]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT.value,
                          check=False)
    if proc.returncode not in (0, 3) or not path.exists():
      raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    print(f"{path.name}: exit {proc.returncode} in {time.time() - t0:.0f} s", flush=True)
  return json.loads(path.read_text())


def row(r: dict) -> str:
  gib = lambda v: "-" if v is None else f"{v / 2**30:.2f}"  # noqa: E731
  m, pc = r["model"], r["per_chip_bytes"]
  return (f"| {m['layers']}L/{m['hidden']} | {m['seq_len']} | {r['topology']} | "
          f"{r['mesh']['data']}x{r['mesh']['fsdp']}x{r['mesh']['tensor']} | "
          f"{m['global_batch']} | {m['remat']} | {gib(pc.get('total'))} | "
          f"{gib(r['analytic_bytes_per_chip'])} | "
          f"{(pc.get('total') or 0) / r['analytic_bytes_per_chip']:.1f} | "
          f"{gib(r['hbm_bytes_per_chip'])} | "
          f"{'yes' if r['fits'] else 'NO'} | {r['estimated_step_seconds'] * 1e3:.1f} | "
          f"{r['estimated_mfu']:.2f} | {r['roofline']['bound']} |")


def main(argv: list[str]) -> None:
  del argv
  out_dir = pathlib.Path(_OUT.value)
  out_dir.mkdir(parents=True, exist_ok=True)
  rows = []
  if _TABLE_ONLY.value:  # the JSONs already in --out_dir, nothing compiled
    for path in sorted(out_dir.glob("*.json")):
      rows.append(row(json.loads(path.read_text())))
  for topology in _TOPOLOGIES.value:
    if _TABLE_ONLY.value:
      break
    for model in _MODELS.value:
      for length in map(int, _LENGTHS.value):
        rows.append(row(run_cell(model, length, topology, out_dir)))
  print("| model | length | topology | mesh d x f x t | batch | remat | compiled GiB/dev | "
        "analytic GiB/dev | compiled / analytic | HBM GiB/dev | fits | roofline ms/step | "
        "MFU <= | bound |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  print("\n".join(rows))


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(main)
