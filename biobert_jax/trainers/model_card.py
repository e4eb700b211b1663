"""Model cards (README.md with the Hugging Face hub's YAML front matter) for fine-tuned
models and their exports. Written from what the run recorded: task.json, the workdir's
config.json and eval_results.json. No upload code."""
from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import shlex
import sys
from typing import Any
from collections.abc import Mapping, Sequence

from biobert_jax import fs

PIPELINE_TAGS = {"ner": "token-classification", "multi_ner": "token-classification",
                 "re": "text-classification", "qa": "question-answering"}
# The corpora this project reads, by the directory names of the shared data.
DATASETS = {"ncbi-disease": "ncbi_disease", "bc5cdr-chem": "bigbio/bc5cdr",
            "bc5cdr-disease": "bigbio/bc5cdr", "gad": "bigbio/gad",
            "chemprot": "bigbio/chemprot", "bioasq6b": "bigbio/bioasq_task_b",
            "bioasq7b": "bigbio/bioasq_task_b"}
LIMITS = {
    "ner": "Tags words as BERT's basic tokenizer splits them; entities never cross a word. "
           "Texts longer than the window are tagged in overlapping windows (each word "
           "from the window where it has most context); transformers' pipeline windows "
           "differently (see docs/huggingface.md).",
    "multi_ner": "One head per corpus; each exported directory holds one head.",
    "re": "Expects both entities replaced by the anonymisation markers the model was "
          "trained with (e.g. @GENE$ and @DISEASE$); sentence-level only.",
    "qa": "Extractive: an answer is a span of the given context; no 'no answer'.",
}


def library_version() -> str:
  try:
    return importlib.metadata.version("biobert-jax")
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def command_line() -> str:
  """The command that is running, as a shell would take it back."""
  return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), "-m"]
                  + _module_argv())


def _module_argv() -> list[str]:
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  name = spec.name if spec is not None else os.path.basename(sys.argv[0])
  return [name] + sys.argv[1:]


def _json(path: str) -> dict | None:
  if not fs.exists(path):
    return None
  with fs.open(path, encoding="utf-8") as f:
    return json.load(f)


def _corpus(info: Mapping[str, Any], config: Mapping[str, Any] | None) -> list[str]:
  if info.get("task") == "multi_ner":
    return [h.get("corpus", h["name"]) for h in info.get("heads", [])]
  config = config or {}
  data_dir = config.get("data_dir") or ""
  if data_dir:
    return [fs.basename(data_dir.rstrip("/"))]
  sub = config.get(info.get("task", ""), {}) or {}
  return [sub["corpus"]] if sub.get("corpus") else []


def _scores(results: Mapping[str, Any] | None) -> list[str]:
  if not results:
    return ["No evaluation results were recorded with this model."]
  rows = ["| split | " + " | ".join(("precision", "recall", "f1", "mrr", "strict_acc",
                                      "lenient_acc")) + " |", "|---" * 7 + "|"]
  for split in ("dev", "test"):
    r = results.get(split)
    if isinstance(r, list):  # QA test batches: their mean
      r = results.get(f"{split}_mean") or (r[0] if r else None)
    if not isinstance(r, Mapping):
      continue
    cells = [f"{r[k]:.4f}" if isinstance(r.get(k), (int, float)) else "-" for k in
             ("precision", "recall", "f1", "mrr", "strict_acc", "lenient_acc")]
    rows.append(f"| {split} | " + " | ".join(cells) + " |")
  if len(rows) == 2:
    return ["No dev/test scores were recorded with this model."]
  return rows + ["", f"Best epoch: {results.get('best_epoch')}; primary metric: "
                     f"{results.get('primary_metric')}."]


def render(info: Mapping[str, Any], config: Mapping[str, Any] | None = None,
           results: Mapping[str, Any] | None = None, *, labels: Sequence[str] | None = None,
           export: str = "", command: str = "") -> str:
  """The card's text. `export` says which transformers class/layout the directory holds."""
  task = info.get("task", "")
  corpora = _corpus(info, config)
  datasets = sorted({DATASETS[c.lower()] for c in corpora if c.lower() in DATASETS})
  front = ["---", "library_name: transformers" if export else "library_name: biobert-jax",
           f"pipeline_tag: {PIPELINE_TAGS.get(task, 'feature-extraction')}",
           "tags:", "- biobert-jax", "- bert", "- biomedical", f"- {task}"]
  if datasets:
    front += ["datasets:"] + [f"- {d}" for d in datasets]
  front += ["---", ""]
  config = config or {}
  labels = list(labels if labels is not None else info.get("labels", []))
  if task == "multi_ner":
    label_lines = [f"- {h['name']} ({h.get('corpus', h['name'])}): {', '.join(h['labels'])}"
                   for h in info.get("heads", [])]
  else:
    label_lines = [f"- {', '.join(labels)}" if labels else "- (none: span prediction)"]
  # The learning rate sits in the optim block (biobert_jax/configs/optim.py).
  flat = dict(config, **{k: v for k, v in (config.get("optim") or {}).items()
                         if k == "learning_rate"})
  budget = {k: flat.get(k) for k in ("num_epochs", "batch_size", "learning_rate",
                                     "max_seq_length", "doc_stride",
                                     "max_train_examples", "max_eval_examples")
            if k in flat}
  cmd = command or info.get("command") or "(not recorded)"
  body = [
      f"# {task} model fine-tuned with biobert-jax", "",
      f"Task: {task}" + (f" ({export})" if export else "") + ".", "",
      "## Training", "",
      "- Base checkpoint: "
      + str(config.get("init_checkpoint") or info.get("base_checkpoint") or "(not recorded)"),
      f"- Data: {', '.join(corpora) or '(not recorded)'}"
      + (f" from {config['data_dir']}" if config.get("data_dir") else "")
      + "; splits train / dev (model selection) / test (reported)",
      f"- Budget: {json.dumps(budget, sort_keys=True) if budget else '(not recorded)'}",
      f"- Seed: {config.get('seed', '(not recorded)')}",
      f"- Casing: {'uncased (lower-cased input)' if info.get('lowercase') else 'cased'}; "
      f"window {info.get('max_seq_length')} pieces",
      "", "## Scores", "", *_scores(results), "",
      "## Labels", "", *label_lines, "",
      "## Reproduce", "", "```", cmd, "```", "",
      f"biobert-jax version {info.get('library_version') or library_version()}.", "",
      "## Known limits", "", f"- {LIMITS.get(task, 'See the project README.')}",
      "- Scores are from the splits above; expect lower figures on other text.", ""]
  return "\n".join(front + body)


def write_card(out_dir: str | os.PathLike, info: Mapping[str, Any], *,
               workdir: str | os.PathLike | None = None, config: Mapping | None = None,
               results: Mapping | None = None, **kwargs: Any) -> pathlib.Path:
  """Writes `out_dir/README.md`; config and results default to the workdir's files."""
  if workdir is not None:
    config = config if config is not None else _json(fs.join(workdir, "config.json"))
    results = (results if results is not None
               else _json(fs.join(workdir, "eval_results.json")))
  path = fs.join(out_dir, "README.md")
  fs.write_text(path, render(info, config, results, **kwargs))
  return fs.path(path)
