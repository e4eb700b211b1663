"""Raw-text prediction over files: the library behind experiments/predict.py."""
import importlib
import json
import os

from data_pipeline import textio
from data_pipeline.errors import InputError
from biobert_jax import fs


def read_records(path: str | os.PathLike) -> list[dict]:
  """Records with "text": from a .jsonl (field "text") or a plain one-text-per-line file.

  Raises:
    InputError: `path:line: ...` for invalid UTF-8, a broken JSON line or a JSON line
      that is not an object with a "text" string. A leading UTF-8 BOM is dropped.
  """
  path = os.fspath(path)
  records = []
  for lineno, line in textio.iter_lines(path):
    if path.endswith(".jsonl"):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg} at column "
                         f"{e.colno})") from None
      except RecursionError:
        raise InputError(f"{path}:{lineno}: JSON nested too deeply") from None
      if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise InputError(f"{path}:{lineno}: expected a JSON object with a \"text\" string")
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
  with fs.open(output_path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
  return len(records)
