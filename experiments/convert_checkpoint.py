r"""Converts a BERT checkpoint between formats (any `checkpoints.load` input to hf|tf1|native).

  python -m experiments.convert_checkpoint --input=PATH --output=DIR --format=hf
"""
from __future__ import annotations

from absl import app, flags

from biobert_jax import checkpoints

_INPUT = flags.DEFINE_string("input", None, "checkpoint to read (any supported format)")
_OUTPUT = flags.DEFINE_string("output", None, "output directory")
_FORMAT = flags.DEFINE_enum("format", "hf", ["hf", "tf1", "native"], "output format")
_STRICT = flags.DEFINE_bool("strict", True, "fail on missing/unexpected tensors in --input")


def main(argv):
  del argv
  out = checkpoints.convert_checkpoint(_INPUT.value, _OUTPUT.value, _FORMAT.value, _STRICT.value)
  print(f"wrote {_FORMAT.value} checkpoint: {out}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["input", "output"])
  app.run(main)
