"""Raw-text prediction over files: the library behind experiments/predict.py."""
import importlib
import json


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
  module = importlib.import_module(f"biobert_jax.tasks.{task}")
  if not hasattr(module, "predict_records"):
    raise ValueError(f"task {task!r} has no raw-input prediction (predict_records)")
  records = module.predict_records(checkpoint, read_records(input_path))
  with open(output_path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
  return len(records)
