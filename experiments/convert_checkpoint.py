r"""Converts a BERT checkpoint between formats (any `checkpoints.load` input to hf|tf1|native).

  python -m experiments.convert_checkpoint --input=PATH --output=DIR --format=hf

A fine-tuned model (workdir or model/) with --format=hf becomes a transformers task directory
with id2label, tokenizer files and a model card (biobert_jax/trainers/hf_export.py).
"""
from __future__ import annotations

import pathlib

from absl import app, flags

from biobert_jax import checkpoints

_INPUT = flags.DEFINE_string("input", None, "checkpoint to read (any supported format)")
_OUTPUT = flags.DEFINE_string("output", None, "output directory")
_FORMAT = flags.DEFINE_enum("format", "hf", ["hf", "tf1", "native"], "output format")
_STRICT = flags.DEFINE_bool("strict", True, "fail on missing/unexpected tensors in --input")


def is_finetuned(path: str) -> bool:
  p = pathlib.Path(path)
  return ((p / "task.json").exists() or (p / "model" / "task.json").exists()
          or (p / "labels.txt").exists())


def main(argv):
  del argv
  if is_finetuned(_INPUT.value):
    if _FORMAT.value != "hf":
      raise app.UsageError(f"{_INPUT.value} is a fine-tuned model: only --format=hf exports "
                           "it with its task head (its model/ directory is already native)")
    from biobert_jax.trainers import hf_export
    written = hf_export.export_model_dir(_INPUT.value, _OUTPUT.value)
    print(f"wrote transformers task model: {', '.join(str(w) for w in written)} "
          f"(model card {pathlib.Path(_OUTPUT.value) / 'README.md'})")
    return
  out = checkpoints.convert_checkpoint(_INPUT.value, _OUTPUT.value, _FORMAT.value, _STRICT.value)
  print(f"wrote {_FORMAT.value} checkpoint: {out}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["input", "output"])
  app.run(main)
