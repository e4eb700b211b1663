r"""Predicts with a fine-tuned NER model on raw text (one text per line, or JSONL with "text").

  python -m experiments.predict --task=ner --checkpoint=WORKDIR_OR_MODEL_DIR \
    --input=texts.txt --output=entities.jsonl

A BioC collection (XML or JSON, recognised by content) is tagged passage by passage, with
BioC's document offsets; --format=jsonl|pubtator|bioc-xml|bioc-json.
"""
import sys

from absl import app, flags

from biobert_jax import runtime
from biobert_jax.trainers.predict import predict_file
from biobert_jax.trainers.predict_formats import OUTPUT_FORMATS
from data_pipeline.errors import InputError

_TASK = flags.DEFINE_enum("task", "ner", ["ner", "re", "qa"], "Task family.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Finetune workdir or its model/ dir.")
_INPUT = flags.DEFINE_string("input", None, "Text file (one text per line), .jsonl or BioC.")
_OUTPUT = flags.DEFINE_string("output", None, "Output file.")
_FORMAT = flags.DEFINE_enum("format", "jsonl", list(OUTPUT_FORMATS), "Output format (NER).")
_LOG_EVERY = flags.DEFINE_float("log_every_s", 30.0, "Seconds between progress lines.",
                                lower_bound=1e-3)
flags.mark_flags_as_required(["checkpoint", "input", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runtime.setup_process()  # CPU: host allocator settings; all: compile cache
  try:
    n = predict_file(_TASK.value, _CHECKPOINT.value, _INPUT.value, _OUTPUT.value,
                     _FORMAT.value, log_every_s=_LOG_EVERY.value)
  except InputError as e:  # bad input line or unwritable output: one line, exit status 1
    sys.exit(f"error: {e}")
  print(f"wrote {n} records to {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
