"""Console scripts: `biobert-jax <command> [flags]` and one `biobert-jax-<command>` each.

Each command runs its main module exactly as `python -m experiments.<module>` would
(`runpy` executes the module's `__main__` block), so flags and behaviour are the same.
"""
from __future__ import annotations

import runpy
import sys

COMMANDS = {
    "pretrain": "experiments.pretrain",
    "finetune": "experiments.finetune",
    "predict": "experiments.predict",
    "annotate": "experiments.annotate",
    "convert": "experiments.convert_checkpoint",
    "plan": "experiments.plan",
    "main-job": "experiments.main_job",
    "create-pretraining-data": "experiments.create_pretraining_data",
    "build-vocab": "experiments.build_vocab",
    "prepare-chemprot": "experiments.prepare_chemprot",
}


def run_command(command: str, argv: list[str]) -> None:
  """Runs `command`'s main with `argv` (without the program name)."""
  module = COMMANDS[command]
  sys.argv = [f"biobert-jax-{command}", *argv]
  runpy.run_module(module, run_name="__main__", alter_sys=True)


def main() -> None:
  """`biobert-jax <command> [flags]`."""
  args = sys.argv[1:]
  if not args or args[0] in ("-h", "--help", "help"):
    print("usage: biobert-jax <command> [--flags]\ncommands: " + ", ".join(COMMANDS))
    sys.exit(0 if args else 2)
  if args[0] not in COMMANDS:
    print(f"biobert-jax: unknown command {args[0]!r}; commands: {', '.join(COMMANDS)}",
          file=sys.stderr)
    sys.exit(2)
  run_command(args[0], args[1:])


def _entry(command: str):
  def entry() -> None:
    run_command(command, sys.argv[1:])
  entry.__name__ = command.replace("-", "_")
  entry.__doc__ = f"`biobert-jax-{command}`: runs {COMMANDS[command]}."
  return entry


pretrain = _entry("pretrain")
finetune = _entry("finetune")
predict = _entry("predict")
annotate = _entry("annotate")
convert = _entry("convert")
plan = _entry("plan")
main_job = _entry("main-job")
