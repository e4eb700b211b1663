r"""Converts a BERT checkpoint between formats.

  python -m experiments.convert_checkpoint --input=PATH --output=DIR --format=hf|tf1|native

--input: anything `biobert_jax.checkpoints.load` reads (HF directory, TF1 checkpoint directory
or prefix, native directory / pre-training workdir), or a fine-tuned workdir / its model/.
--format=tf1 writes DIR/model.ckpt (+ bert_config.json); hf writes DIR/config.json +
model.safetensors; native writes DIR/bert_config.json + DIR/params/. Task heads other than
the pre-training heads ("cls") are dropped for hf/tf1 (they have no standard name there)
and kept for native.

A fine-tuned model (a directory with task.json, or a workdir with model/task.json) with
--format=hf becomes a transformers task directory: BertForTokenClassification (NER; a
multi-task NER model gives one directory per head, DIR/<head>/),
BertForSequenceClassification (RE) or BertForQuestionAnswering (QA), with id2label, the
tokenizer files and the model card DIR/README.md (biobert_jax/trainers/hf_export.py).
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
    from biobert_jax.trainers import hf_export  # pylint: disable=import-outside-toplevel
    written = hf_export.export_model_dir(_INPUT.value, _OUTPUT.value)
    print(f"wrote transformers task model: {', '.join(str(w) for w in written)} "
          f"(model card {pathlib.Path(_OUTPUT.value) / 'README.md'})")
    return
  out = checkpoints.convert_checkpoint(_INPUT.value, _OUTPUT.value, _FORMAT.value, _STRICT.value)
  print(f"wrote {_FORMAT.value} checkpoint: {out}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["input", "output"])
  app.run(main)
