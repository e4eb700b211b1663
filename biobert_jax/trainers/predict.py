"""Raw-text prediction over files: the library behind experiments/predict.py."""
import importlib
import json
import os

from biobert_jax.trainers import predict_formats
from data_pipeline import textio
from data_pipeline.errors import InputError


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


def predict_file(task: str, checkpoint: str, input_path: str, output_path: str,
                 output_format: str = "jsonl") -> int:
  """Runs the task's `predict_records` over a file; returns the number of records.

  A BioC collection (by content) is tagged passage by passage; `output_format` jsonl,
  pubtator, bioc-xml or bioc-json (trainers/predict_formats)."""
  module = importlib.import_module(f"biobert_jax.tasks.{task}")
  if not hasattr(module, "predict_records"):
    raise ValueError(f"task {task!r} has no raw-input prediction (predict_records)")
  if predict_formats.is_bioc(input_path):
    records = predict_formats.predict_bioc(
        input_path, lambda rs: module.predict_records(checkpoint, rs))
  else:
    records = module.predict_records(checkpoint, read_records(input_path))
  predict_formats.write_records(records, output_path, output_format)
  return len(records)
