r"""Predicts with a fine-tuned model on raw text.

  python -m experiments.predict --task=ner --checkpoint=WORKDIR_OR_MODEL_DIR \
    --input=texts.txt --output=entities.jsonl

--input: one text per line, or a .jsonl file with a "text" field per record (other fields
are carried through). --output: one JSON record per input, with the task's predictions
added (NER: "entities": [{"type", "start", "end", "text", "score"}], character offsets
into the original text). A task supports this when its adapter module defines
`predict_records(model_dir, records) -> records`.
"""
import importlib
import json

from absl import app, flags

_TASK = flags.DEFINE_enum("task", "ner", ["ner", "re", "qa"], "Task family.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Finetune workdir or its model/ dir.")
_INPUT = flags.DEFINE_string("input", None, "Text file (one text per line) or .jsonl.")
_OUTPUT = flags.DEFINE_string("output", None, "Output .jsonl file.")
flags.mark_flags_as_required(["checkpoint", "input", "output"])


def read_records(path: str) -> list[dict]:
  """Records with "text": from a .jsonl (field "text") or a plain one-text-per-line file."""
  records = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      line = line.rstrip("\n")
      if path.endswith(".jsonl"):
        if not line.strip():
          continue
        record = json.loads(line)
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
          raise ValueError(f"{path}:{lineno}: expected a JSON object with a \"text\" string")
        records.append(record)
      else:
        records.append({"text": line})
  return records


def predict_file(task: str, checkpoint: str, input_path: str, output_path: str) -> int:
  """Runs the task's `predict_records` over a file; returns the number of records."""
  module = importlib.import_module(f"experiments.tasks.{task}")
  if not hasattr(module, "predict_records"):
    raise ValueError(f"task {task!r} has no raw-input prediction (predict_records)")
  records = module.predict_records(checkpoint, read_records(input_path))
  with open(output_path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
  return len(records)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  n = predict_file(_TASK.value, _CHECKPOINT.value, _INPUT.value, _OUTPUT.value)
  print(f"wrote {n} records to {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
