"""Fine-tuned task models as transformers task directories, and back.

A task directory is what `AutoModelForTokenClassification` / `...SequenceClassification` /
`...QuestionAnswering`, `AutoTokenizer` and `pipeline(...)` load offline: config.json (the
task class in `architectures`, `id2label`/`label2id`), model.safetensors (`bert.` encoder
+ the head under transformers' name, see `names.HF_TASK_CLASSES`), vocab.txt,
tokenizer_config.json (casing, `model_max_length`, added tokens) and
special_tokens_map.json. No transformers import: files are written as transformers 4.x
writes them, and tests load them with transformers.

The pooler is written only for the class that has one (sequence classification); token
classification and QA are built by transformers without it, so reading such a directory
back fills the unused pooler freshly (`read_task_dir`).
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from biobert_jax.checkpoints import hf, names
from biobert_jax.checkpoints.convert import CheckpointError, disassemble
from biobert_jax.config import BertConfig

TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
ADDED_TOKENS = "added_tokens.json"
VOCAB = "vocab.txt"
SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                  "cls_token": "[CLS]", "mask_token": "[MASK]"}
POOLER = "encoder/pooler/"


def _added_token(content: str, special: bool) -> dict[str, Any]:
  # normalized=False: matched on the raw text, before lower-casing, as our tokenizer
  # matches its extra tokens (e.g. "@GENE$" stays whole in an uncased model).
  return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
          "single_word": False, "special": special}


def write_tokenizer(out: pathlib.Path, vocab: Sequence[str], lowercase: bool,
                    max_length: int, extra_tokens: Sequence[str] = ()) -> None:
  """vocab.txt + tokenizer_config.json + special_tokens_map.json (+ added_tokens.json).

  `vocab` is the base WordPiece vocabulary (without extra tokens); extra tokens get ids
  len(vocab) + i, as in our tokenizer.
  """
  missing = [t for t in SPECIAL_TOKENS.values() if t not in vocab]
  if missing:
    raise CheckpointError(f"vocabulary lacks the special tokens {missing}: transformers' "
                          "BertTokenizer needs them")
  (out / VOCAB).write_text("".join(f"{piece}\n" for piece in vocab), encoding="utf-8")
  index = {piece: i for i, piece in enumerate(vocab)}
  decoder = {str(index[t]): _added_token(t, True) for t in SPECIAL_TOKENS.values()}
  decoder.update({str(len(vocab) + i): _added_token(t, False)
                  for i, t in enumerate(extra_tokens)})
  config = {"tokenizer_class": "BertTokenizer", "do_lower_case": bool(lowercase),
            "do_basic_tokenize": True, "never_split": None,
            "tokenize_chinese_chars": True, "strip_accents": None,
            "model_max_length": int(max_length), "clean_up_tokenization_spaces": False,
            "added_tokens_decoder": dict(sorted(decoder.items(), key=lambda kv: int(kv[0]))),
            **SPECIAL_TOKENS}
  _write_json(out / TOKENIZER_CONFIG, config)
  _write_json(out / SPECIAL_TOKENS_MAP, SPECIAL_TOKENS)
  if extra_tokens:
    _write_json(out / ADDED_TOKENS, {t: len(vocab) + i for i, t in enumerate(extra_tokens)})


def _write_json(path: pathlib.Path, value: Any) -> None:
  path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def export_task(out_dir: str | os.PathLike, *, config: BertConfig, params: Mapping[str, Any],
                task: str, labels: Sequence[str], vocab: Sequence[str], lowercase: bool,
                max_length: int, extra_tokens: Sequence[str] = (), head: str = "",
                finetuning_task: str = "") -> pathlib.Path:
  """Writes one transformers task directory for `task` ("ner", "re" or "qa").

  params: {"encoder": ..., <head>: {"kernel", "bias"}}; `head` names the head scope when
  it is not the class's own (a multi-task NER head).
  """
  from safetensors.numpy import save_file

  cls = names.hf_task_class(task=task)
  if cls is None:
    raise CheckpointError(f"task {task!r} has no transformers class; known: "
                          f"{[c.task for c in names.HF_TASK_CLASSES]}")
  head_params = params[head or cls.head]
  num_out = int(np.shape(head_params["bias"])[0])
  if task == "qa":
    labels = []
    if num_out != 2:
      raise CheckpointError(f"QA head has {num_out} outputs, expected 2 (start, end)")
  elif num_out != len(labels):
    raise CheckpointError(f"head {head or cls.head!r} has {num_out} outputs but there are "
                          f"{len(labels)} labels {list(labels)}")
  if config.vocab_size != len(vocab) + len(extra_tokens):
    raise CheckpointError(f"the model has {config.vocab_size} word embeddings but the "
                          f"tokenizer {len(vocab)} + {len(extra_tokens)} extra tokens")
  tensors, _ = disassemble(config, {"encoder": params["encoder"]}, fmt="hf")
  tensors = {names.HF_PREFIX + n: a for n, a in tensors.items()
             if cls.pooler or not n.startswith("pooler.")}
  tensors.update(names.task_head_external(names.hf_task_head(cls.head), head_params))
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  hf_config = config.to_hf_dict(architectures=(cls.architecture,))
  if labels:
    hf_config["id2label"] = {str(i): l for i, l in enumerate(labels)}
    hf_config["label2id"] = {l: i for i, l in enumerate(labels)}
  if task == "re":
    hf_config["problem_type"] = "single_label_classification"
  if finetuning_task:
    hf_config["finetuning_task"] = finetuning_task
  _write_json(out / hf.CONFIG, hf_config)
  save_file(tensors, str(out / hf.SAFETENSORS), metadata={"format": "pt"})
  write_tokenizer(out, vocab, lowercase, max_length, extra_tokens)
  return out


def is_task_dir(path: str | os.PathLike) -> bool:
  """A HF directory whose config.json names one of the task classes we read."""
  p = pathlib.Path(path)
  if not hf.is_hf_dir(p):
    return False
  with open(p / hf.CONFIG, encoding="utf-8") as f:
    arch = (json.load(f).get("architectures") or [""])[0]
  return names.hf_task_class(architecture=arch) is not None


def read_task_dir(path: str | os.PathLike) -> tuple[dict[str, Any], BertConfig, dict[str, Any]]:
  """(task.json-like info, config, params) of a transformers task directory.

  Casing comes from tokenizer_config.json `do_lower_case` (absent: True, transformers'
  BertTokenizer default), the window length from
  `model_max_length` (capped by the position table), extra tokens from the added tokens
  with ids past vocab.txt.
  """
  p = pathlib.Path(path)
  with open(p / hf.CONFIG, encoding="utf-8") as f:
    raw = json.load(f)
  arch = (raw.get("architectures") or [""])[0]
  cls = names.hf_task_class(architecture=arch)
  if cls is None:
    raise CheckpointError(f"{p / hf.CONFIG}: architectures {raw.get('architectures')} is "
                          f"none of {[c.architecture for c in names.HF_TASK_CLASSES]}")
  config, params, report = hf.load(p, strict=False)
  fresh = [n for n in report.new if not n.startswith(POOLER) or cls.pooler]
  if fresh or report.unused:
    raise CheckpointError(f"{p}: not a complete {arch}: missing {fresh}, unexpected "
                          f"{report.unused}")
  if cls.head not in params:
    raise CheckpointError(f"{p}: no {names.hf_task_head(cls.head).kernel} (the {arch} head)")
  tok_path = p / TOKENIZER_CONFIG
  if not (p / VOCAB).exists() or not tok_path.exists():
    raise CheckpointError(f"{p}: needs {VOCAB} and {TOKENIZER_CONFIG} (a WordPiece "
                          "tokenizer) to be used as a model directory")
  with open(tok_path, encoding="utf-8") as f:
    tok = json.load(f)
  base = sum(1 for _ in open(p / VOCAB, encoding="utf-8"))
  added = {int(i): t["content"] for i, t in tok.get("added_tokens_decoder", {}).items()}
  if (p / ADDED_TOKENS).exists():
    with open(p / ADDED_TOKENS, encoding="utf-8") as f:
      added.update({int(i): t for t, i in json.load(f).items()})
  extra = [added[i] for i in sorted(added) if i >= base]
  if sorted(i for i in added if i >= base) != list(range(base, base + len(extra))):
    raise CheckpointError(f"{p}: added token ids {sorted(added)} leave gaps after the "
                          f"{base} pieces of {VOCAB}")
  max_length = min(int(tok.get("model_max_length") or config.max_position_embeddings),
                   config.max_position_embeddings)
  info: dict[str, Any] = {"task": cls.task, "max_seq_length": max_length,
                          "doc_stride": max_length // 2,
                          "lowercase": bool(tok.get("do_lower_case", True)),
                          "extra_tokens": extra, "source": f"transformers {arch}"}
  if cls.task != "qa":
    id2label = raw.get("id2label") or {}
    n = int(np.shape(params[cls.head]["bias"])[0])
    labels = [id2label.get(str(i)) for i in range(n)]
    if None in labels:
      raise CheckpointError(f"{p / hf.CONFIG}: id2label {id2label} does not name all {n} "
                            "outputs of the head")
    info["labels"] = labels
  if cls.task == "re":
    info["pooling"] = "cls"
  return info, config, params
