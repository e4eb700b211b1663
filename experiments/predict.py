r"""Predicts with a fine-tuned NER model on raw text (one text per line, or JSONL with "text").

  python -m experiments.predict --task=ner --checkpoint=WORKDIR_OR_MODEL_DIR \
    --input=texts.txt --output=entities.jsonl
"""
from absl import app, flags

from biobert_jax import runtime
from biobert_jax.trainers.predict import predict_file

_TASK = flags.DEFINE_enum("task", "ner", ["ner", "re", "qa"], "Task family.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Finetune workdir or its model/ dir.")
_INPUT = flags.DEFINE_string("input", None, "Text file (one text per line) or .jsonl.")
_OUTPUT = flags.DEFINE_string("output", None, "Output .jsonl file.")
flags.mark_flags_as_required(["checkpoint", "input", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runtime.setup_process()  # CPU: host allocator settings; all: compile cache
  n = predict_file(_TASK.value, _CHECKPOINT.value, _INPUT.value, _OUTPUT.value)
  print(f"wrote {n} records to {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
