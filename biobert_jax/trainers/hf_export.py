"""Export of a fine-tuned model directory as transformers task directories + model cards.

Layout of `out`:
* ner / re / qa: `out` is one task directory (config.json, model.safetensors, tokenizer
  files, README.md).
* multi_ner: one token-classification directory per head, `out/<head>/`, each complete
  on its own (transformers has no multi-head class, and a pipeline takes one model), plus
  `out/README.md` naming the heads and `out/heads.json` ({"heads": [{"name", "corpus",
  "path", "labels"}]}).
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from biobert_jax.checkpoints import hf_tasks
from biobert_jax.trainers import model_card
from biobert_jax.trainers import model_dir as model_dir_lib


def _workdir(model_dir: str) -> pathlib.Path | None:
  parent = pathlib.Path(model_dir).parent
  return parent if (parent / "config.json").exists() else None


def export_model_dir(src: str | os.PathLike, out: str | os.PathLike, *,
                     config: dict | None = None,
                     results: dict | None = None) -> list[pathlib.Path]:
  """Writes `src` (a fine-tune workdir or its model/) as transformers directories.

  The model cards read the run's config.json / eval_results.json beside model/ unless
  `config` / `results` (their content) are given.

  Returns the task directories written. Raises ValueError for a model transformers has
  no class for (RE with entity_start pooling).
  """
  loaded = model_dir_lib.load_finetuned(src)
  info, tok = loaded.info, loaded.tokenizer
  task = info.get("task")
  out = pathlib.Path(out)
  workdir = _workdir(loaded.model_dir)
  card = dict(workdir=workdir, config=config, results=results)
  extra = list(info.get("extra_tokens", []))
  vocab = list(tok.vocab[:len(tok.vocab) - len(extra)])
  common = dict(config=loaded.bert_config, vocab=vocab, lowercase=bool(info["lowercase"]),
                max_length=int(info["max_seq_length"]), extra_tokens=extra)
  if task == "re" and info.get("pooling", "cls") != "cls":
    raise ValueError(f"{loaded.model_dir}: RE with pooling={info['pooling']!r} has no "
                     "transformers class (BertForSequenceClassification pools [CLS]); "
                     "fine-tune with --config.re.pooling=cls to export")
  if task in ("ner", "re", "qa"):
    hf_tasks.export_task(out, params=loaded.params, task=task,
                         labels=info.get("labels", []), **common)
    model_card.write_card(out, info, **card,
                          export=hf_tasks.names.hf_task_class(task=task).architecture)
    return [out]
  if task == "multi_ner":
    written, heads = [], []
    for head in info["heads"]:
      sub = out / head["name"]
      hf_tasks.export_task(sub, params={"encoder": loaded.params["encoder"],
                                        head["name"]: loaded.params[head["name"]]},
                           task="ner", labels=head["labels"], head=head["name"],
                           finetuning_task=head.get("corpus", head["name"]), **common)
      head_info = {**info, "task": "ner", "labels": head["labels"]}
      model_card.write_card(sub, head_info, **card,
                            export=f"BertForTokenClassification, head {head['name']} of a "
                                   "multi-task NER model")
      heads.append({"name": head["name"], "corpus": head.get("corpus", head["name"]),
                    "path": head["name"], "labels": head["labels"]})
      written.append(sub)
    (out / "heads.json").write_text(json.dumps({"heads": heads}, indent=2) + "\n",
                                    encoding="utf-8")
    model_card.write_card(out, info, **card,
                          export="one BertForTokenClassification directory per head: "
                                 + ", ".join(f"{h['path']}/" for h in heads))
    return written
  raise ValueError(f"{loaded.model_dir}: task {task!r} cannot be exported to transformers")


def export_info(info: dict[str, Any]) -> dict[str, Any]:
  """task.json additions recorded at fine-tuning time for the model card."""
  return {**info, "command": model_card.command_line(),
          "library_version": model_card.library_version()}
