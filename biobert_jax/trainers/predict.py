"""Raw-text prediction over files: the library behind experiments/predict.py."""
import importlib
import json
import os
import time

from biobert_jax.trainers import annotate_outputs as outputs_lib
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


def predict_file(task: str, checkpoint: str, input_path: str, output_path: str, *,
                 chunk: int = 256, log_every_s: float = 30.0, log=print) -> int:
  """Runs the task's `predict_records` over a file; returns the number of records.

  The input is read and the output opened (under a temporary name, renamed when all is
  written) before the model loads, so a bad path fails at once. Tasks with a
  `load_predictor(model_dir)` predict in chunks of `chunk` records with a progress line
  every `log_every_s` seconds.

  Raises:
    InputError: one line for a bad input line, or an output that cannot be written.
  """
  module = importlib.import_module(f"biobert_jax.tasks.{task}")
  if not hasattr(module, "predict_records"):
    raise ValueError(f"task {task!r} has no raw-input prediction (predict_records)")
  if chunk < 1:
    raise ValueError(f"chunk must be >= 1, got {chunk}")
  records = read_records(input_path)
  if os.path.isdir(output_path):
    raise InputError(f"--output {output_path} is a directory; name a .jsonl file")
  tmp = os.path.join(os.path.dirname(os.path.abspath(output_path)),
                     outputs_lib.temp_name(os.path.basename(output_path)))
  try:
    handle = outputs_lib.open_new(tmp)
  except OSError as e:
    raise InputError(f"--output {output_path}: cannot write there ({e.strerror})") from None
  try:
    with handle:
      load = getattr(module, "load_predictor", None)
      model = load(checkpoint) if load is not None else checkpoint
      step = chunk if load is not None else max(len(records), 1)
      start = last = time.time()
      for i in range(0, len(records), step):
        for record in module.predict_records(model, records[i:i + step]):
          handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        done, now = min(i + step, len(records)), time.time()
        if now - last >= log_every_s and done < len(records):
          last = now
          rate = done / max(now - start, 1e-9)
          log(f"predict: {done}/{len(records)} records, {rate:.1f} records/s, ETA "
              f"{(len(records) - done) / max(rate, 1e-9):.0f}s")
    os.replace(tmp, output_path)
  except BaseException:
    if os.path.lexists(tmp):
      os.remove(tmp)
    raise
  return len(records)
