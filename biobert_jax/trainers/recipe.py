"""BioBERT's recipe as one library call (the main job): continue a general checkpoint on
PubMed, fine-tune the general and the continued encoder on each NER corpus, report the gain.

Design and why: WORKSPACE_NOTES.md, "The main job"; figures: docs/results.md.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import time
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from biobert_jax import tree
from biobert_jax.trainers import finetune as finetune_lib
from biobert_jax.trainers import recipe_steps as steps
from biobert_jax.trainers import workdir as workdir_lib

ARMS = ("general", "continued", "scratch", "random_init")
DEFAULT_ARMS = ("general", "continued")
DEFAULT_CORPORA = ("NCBI-disease", "BC5CDR-chem")

# Budgets for `make demo` (3 seeds x 2 corpora x 2 arms) on a 2-core CPU, where every step
# is compute-bound (why: WORKSPACE_NOTES.md, "The main job"; figures: docs/results.md).
# Fine-tuning lr 3e-4, chosen on dev F1: at 1e-4 the short fine-tunes had not
# converged and the continued encoder, further from a tagger at the start, lost.
# Fine-tuning: the first 1000 training sentences x 2 epochs at batch 32 (62 steps), dev/test
# capped at their first 500 sentences; continuation 150 steps. This is the cheapest budget
# measured whose mean test-F1 gain is positive on both corpora (+0.026 NCBI-disease, +0.028
# BC5CDR-chem, seeds 0-2, on a 2-core AMD EPYC; deterministic on one CPU model, and the
# figures move by up to 0.02 on another: docs/results.md).
# Cheaper budgets tried on dev (batch 16 over 500 sentences, caps 250, continuation 120,
# also with frozen word embeddings; the same at batch 8, with whole-word masking,
# nsp_weight 0, continuation lr 5e-5, 200 head steps) all lose on BC5CDR-chem.
# Job time: docs/performance.md. `continue_trainable` takes regexes of the leaves the
# continuation trains (() = all). Continuation at sequence length 64: NER sentences are
# short (NCBI ~40 pieces), and it halves the cost of a step against 128. Fine-tuning uses
# the first N training sentences (the same ones for every arm and seed) and the first M
# dev/test sentences.
FULL = dict(
    head_steps=40, head_learning_rate=1e-3,
    continue_steps=150, continue_learning_rate=1e-4, continue_warmup_steps=15,
    continue_trainable=(), continue_nsp_weight=1.0,
    continue_batch_size=32, max_seq_length=64, max_predictions_per_seq=10,
    task_text=True, scratch_preset="mini", scratch_steps=400,
    finetune_epochs=2, finetune_learning_rate=3e-4, finetune_batch_size=32,
    finetune_max_seq_length=128, finetune_bucket_length=16, finetune_group_by_length=8,
    max_train_examples=1000, max_eval_examples=500, dtype="float32", eval_steps=10)
# A smoke run of every stage within 4 minutes: its cost is fixed (imports, tf.data builds,
# XLA compiles), so it cuts compiled shapes (fine-tuning lengths in buckets of 64: 2 train
# and 2 predict programs instead of ~8 each) and evaluation batches, not just steps.
QUICK = dict(FULL, head_steps=8, continue_steps=8, continue_warmup_steps=1,
             continue_batch_size=16, eval_steps=2, scratch_preset="tiny", scratch_steps=16,
             finetune_epochs=1, finetune_batch_size=16, finetune_bucket_length=64,
             max_train_examples=128, max_eval_examples=64)


def read_training_sentences(tsv: str | os.PathLike) -> list[str]:
  """Words of each sentence of a CoNLL-style NER file ("word<TAB>tag", blank = break)."""
  sentences, words = [], []
  with open(tsv, encoding="utf-8") as f:
    for line in f:
      token = line.split("\t", 1)[0].strip()
      if token:
        words.append(token)
      elif words:
        sentences.append(" ".join(words))
        words = []
  if words:
    sentences.append(" ".join(words))
  return sentences


def write_task_text(ner_dirs: Sequence[str], out_path: str | os.PathLike,
                    sentences_per_doc: int = 10) -> str:
  """Unlabelled text of the NER *training* splits (never dev/test), one pseudo-document of
  `sentences_per_doc` consecutive sentences per line (the files keep abstracts in order,
  so neighbours are mostly from the same abstract and NSP pairs stay meaningful)."""
  out_path = pathlib.Path(out_path)
  docs = []
  for d in ner_dirs:
    sents = read_training_sentences(pathlib.Path(d) / "train.tsv")
    docs += [" ".join(sents[i:i + sentences_per_doc])
             for i in range(0, len(sents), sentences_per_doc)]
  tmp = out_path.with_suffix(".tmp")
  tmp.write_text("\n".join(docs) + "\n", encoding="utf-8")
  os.replace(tmp, out_path)
  return str(out_path)


def _finished(stage: dict, workdir: str) -> dict:
  """The stage's result, or a clear stop when it was interrupted (SIGTERM saves, no export)."""
  if not os.path.isdir(stage["export"]):
    raise RuntimeError(f"pre-training in {workdir} stopped before its last step (no "
                       f"{stage['export']}); re-run the same command to resume it")
  return stage


def _last(rows: list[dict], key: str) -> float | None:
  vals = [r[key] for r in rows if key in r]
  return vals[-1] if vals else None


def _held_out(eval_rows: list[dict]) -> dict | None:
  if not eval_rows:
    return None
  r = eval_rows[-1]
  return {"step": r["step"], "mlm_loss": r.get("eval_mlm_loss"),
          "mlm_accuracy": r.get("eval_mlm_accuracy"), "nsp_accuracy": r.get("eval_nsp_accuracy")}


def continue_pretraining(workdir: str, checkpoint: str, vocab: str, lowercase: bool,
                         train_files: str, s: Mapping[str, Any],
                         extra: Mapping[str, Any]) -> dict[str, Any]:
  """Head-only warmup, then full continuation; held-out MLM before (head stage) / after."""
  common = dict(vocab_path=vocab, lowercase=lowercase, train_files=train_files,
                max_seq_length=s["max_seq_length"],
                max_predictions_per_seq=s["max_predictions_per_seq"],
                batch_size=s["continue_batch_size"], eval_steps=s["eval_steps"], seed=0,
                dtype=s["dtype"], **extra)
  t0 = time.time()
  head = {"export": checkpoint, "metrics": [], "eval": []}
  if s["head_steps"] > 0:  # 0: the checkpoint has its own pre-training heads
    head = steps.pretrain(os.path.join(workdir, "continue_heads"), "mini",
                          init_checkpoint=checkpoint, total_steps=s["head_steps"],
                          **{"optim.learning_rate": s["head_learning_rate"],
                             "optim.warmup_steps": max(1, s["head_steps"] // 10)},
                          trainable=("^cls/",), log_every=max(1, s["head_steps"] // 4),
                          checkpoint_every=s["head_steps"], **common)
    _finished(head, workdir)
  total = s["continue_steps"]
  full = steps.pretrain(os.path.join(workdir, "continue"), "mini",
                        init_checkpoint=head["export"], total_steps=total,
                        **{"optim.learning_rate": s["continue_learning_rate"],
                           "optim.warmup_steps": s["continue_warmup_steps"]},
                        trainable=s["continue_trainable"], nsp_weight=s["continue_nsp_weight"],
                        log_every=max(1, total // 30), checkpoint_every=max(1, total // 3),
                        eval_every=max(1, total // 3), **common)
  _finished(full, workdir)
  rows = full["metrics"]
  return {"export": full["export"], "steps": total, "minutes": (time.time() - t0) / 60,
          "tokens_per_sec": _last(rows, "tokens_per_sec"),
          "held_out": {"before": _held_out(head["eval"]), "after": _held_out(full["eval"])},
          "head_metrics": head["metrics"], "metrics": rows,
          "eval": head["eval"][-1:] + [dict(r, step=r["step"] + s["head_steps"])
                                       for r in full["eval"]]}


def _scores(result: dict, split: str) -> dict:
  r = result.get(split) or {}
  return {k: r.get(k) for k in ("precision", "recall", "f1")}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  v = np.asarray(list(values), dtype=np.float64)
  if v.size == 0:
    return math.nan, math.nan
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def finetune_one(workdir: str, checkpoint: str, corpus_dir: str, seed: int, lowercase: bool,
                 s: Mapping[str, Any]) -> dict:
  """One fine-tune, or its eval_results.json when it already finished with these settings.

  A finished run is reused only when the config its trainer recorded (config.json) has
  the values asked for now; otherwise the trainer is called, and it refuses the workdir
  naming the keys that differ, so a changed budget never reports an old run's score.
  A finished run's training checkpoints are deleted (~0.5 GB each, never needed again);
  a preempted one keeps them and stops the job with how to resume.
  """
  overrides = {"data_dir": corpus_dir, "num_epochs": s["finetune_epochs"],
               "optim.learning_rate": s["finetune_learning_rate"]}
  overrides.update(batch_size=s["finetune_batch_size"],
                   max_seq_length=s["finetune_max_seq_length"],
                   bucket_length=s["finetune_bucket_length"],
                   group_by_length=s["finetune_group_by_length"],
                   max_train_examples=s["max_train_examples"],
                   max_eval_examples=s["max_eval_examples"], seed=seed,
                   lowercase=int(lowercase), dtype=s["dtype"], save_model=False)
  results_path = os.path.join(workdir, "eval_results.json")
  recorded = workdir_lib.recorded_config(workdir)
  if os.path.exists(results_path) and recorded is not None:
    wanted = dict(overrides, init_checkpoint=checkpoint)
    recorded = {k.replace("/", "."): v for k, v in tree.flatten(recorded).items()}
    if all(recorded.get(k) == v for k, v in wanted.items()):
      finetune_lib.discard_checkpoints(workdir)  # left by an older version of this job
      with open(results_path, encoding="utf-8") as f:
        return json.load(f)
  result = steps.finetune(workdir, checkpoint, "ner", **overrides)
  if result.get("preempted"):
    raise RuntimeError(f"fine-tuning in {workdir} was stopped at step {result.get('step')} "
                       "(a checkpoint was saved); re-run the same command to resume it")
  finetune_lib.discard_checkpoints(workdir)  # the results are reused, never the states
  return result


def run(workdir: str, settings: Mapping[str, Any], *, pubmed_files: str = "",
        checkpoint: str = "", arms: Sequence[str] = DEFAULT_ARMS,
        corpora: Sequence[str] = DEFAULT_CORPORA, seeds: Sequence[int] = (0,),
        pretrain_extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The whole recipe; writes summary.json and curves.png into `workdir`, returns the summary.

  The stages call the trainers through `recipe_steps` (pre-training, fine-tuning, the
  random-init export). pubmed_files: the PubMed text ("" = the data dir's abstracts).
  pretrain_extra: more pre-training config overrides (mesh, data.file_format for PubMed
  XML, ...), applied to every pre-training stage.
  """
  bad = [a for a in arms if a not in ARMS]
  if bad or not arms:
    raise ValueError(f"arms={list(arms)}: expected a subset of {list(ARMS)}")
  s = dict(settings)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  checkpoint = checkpoint or steps.default_checkpoint()
  vocab, lowercase = steps.vocab_and_casing(checkpoint)
  extra = dict(pretrain_extra or {})
  corpus_dirs = {c: steps.ner_corpus(c) for c in corpora}
  train_files = pubmed_files or steps.pubmed_text()
  if s["task_text"]:
    train_files += "," + write_task_text(list(corpus_dirs.values()),
                                         os.path.join(workdir, "task_text.txt"))
  t0 = time.time()
  ckpts, continuation, scratch = {}, None, None
  if "general" in arms:
    ckpts["general"] = checkpoint
  if "continued" in arms:
    continuation = continue_pretraining(workdir, checkpoint, vocab, lowercase, train_files,
                                        s, extra)
    ckpts["continued"] = continuation["export"]
  if "scratch" in arms:
    scratch = steps.pretrain(os.path.join(workdir, "scratch"), s["scratch_preset"],
                             vocab_path=vocab, lowercase=lowercase, train_files=train_files,
                             total_steps=s["scratch_steps"],
                             batch_size=s["continue_batch_size"],
                             max_seq_length=s["max_seq_length"],
                             **{"optim.warmup_steps": max(1, s["scratch_steps"] // 10)},
                             log_every=max(1, s["scratch_steps"] // 30),
                             checkpoint_every=s["scratch_steps"], seed=0, **extra)
    _finished(scratch, workdir)
    ckpts["scratch"] = scratch["export"]
  if "random_init" in arms:
    ckpts["random_init"] = steps.random_init_checkpoint(
        os.path.join(workdir, "random_init"), s["scratch_preset"], vocab_path=vocab, seed=0)
  pretrain_minutes = (time.time() - t0) / 60

  runs: dict[str, dict[str, list]] = {}
  for corpus in corpora:
    runs[corpus] = {arm: [] for arm in arms}
    for seed in seeds:
      for arm in arms:
        out = os.path.join(workdir, "finetune", corpus, f"{arm}_seed{seed}")
        print(f"\n--- fine-tuning {arm} (seed {seed}) on {corpus} ---", flush=True)
        result = finetune_one(out, ckpts[arm], corpus_dirs[corpus], seed, lowercase, s)
        runs[corpus][arm].append({"seed": seed, "dev": _scores(result, "dev"),
                                  "test": _scores(result, "test"),
                                  "best_epoch": result.get("best_epoch"),
                                  "history": result.get("history", []),
                                  "workdir": os.path.relpath(out, workdir)})
  summary = summarize(runs, arms, seeds)
  summary.update(checkpoint=checkpoint, vocab=vocab, lowercase=lowercase,
                 settings=s, train_files=train_files, pretrain_minutes=pretrain_minutes,
                 total_minutes=(time.time() - t0) / 60)
  if continuation:
    summary["continuation"] = {k: v for k, v in continuation.items()
                               if k not in ("metrics", "head_metrics", "eval")}
  if scratch:
    summary["scratch"] = {"export": scratch["export"], "held_out": _held_out(scratch["eval"])}
  summary["plot"] = plot(continuation, runs, os.path.join(workdir, "curves.png"))
  with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
  return summary


def summarize(runs: Mapping[str, Mapping[str, list]], arms: Sequence[str],
              seeds: Sequence[int]) -> dict[str, Any]:
  """Per corpus: test F1 per seed and arm, P/R/F1 mean ± std, the gain over "general"."""
  out: dict[str, Any] = {"seeds": list(seeds), "arms": list(arms), "corpora": {},
                         "stats": {}, "gain": {}, "runs": runs}
  for corpus, by_arm in runs.items():
    out["corpora"][corpus] = {arm: [r["test"]["f1"] for r in rs] for arm, rs in by_arm.items()}
    out["stats"][corpus] = {
        arm: {f"{split}_{k}": mean_std([r[split][k] for r in rs])
              for split in ("dev", "test") for k in ("precision", "recall", "f1")}
        for arm, rs in by_arm.items()}
    if "general" in by_arm:
      base = out["corpora"][corpus]["general"]
      out["gain"][corpus] = {}
      for arm in arms:
        if arm == "general":
          continue
        per_seed = [a - b for a, b in zip(out["corpora"][corpus][arm], base)]
        m, sd = mean_std(per_seed)
        out["gain"][corpus][arm] = {"mean": m, "std": sd, "per_seed": per_seed}
  return out


def format_table(summary: Mapping[str, Any]) -> str:
  """One table: test P/R/F1 (mean ± std over seeds) per corpus and arm, dev F1, the gain."""
  n = len(summary["seeds"])
  width = 97
  name = "/".join(pathlib.Path(summary["checkpoint"]).parts[-2:])
  lines = ["", "=" * width,
           f"BioBERT recipe: {name} "
           f"({'uncased' if summary['lowercase'] else 'cased'}), test scores mean ± std over "
           f"{n} seed(s)"]
  c = summary.get("continuation")
  if c:
    b, a = c["held_out"]["before"] or {}, c["held_out"]["after"] or {}
    lines.append(
        f"continued pre-training: {c['steps']} steps, {c['minutes']:.1f} min; held-out MLM "
        f"loss {b.get('mlm_loss', math.nan):.3f} -> {a.get('mlm_loss', math.nan):.3f}, "
        f"accuracy {b.get('mlm_accuracy', math.nan):.3f} -> {a.get('mlm_accuracy', math.nan):.3f}")
  lines += ["-" * width,
            f"{'corpus':<16}{'arm':<13}{'test P':>17}{'test R':>17}{'test F1':>17}"
            f"{'dev F1':>17}", "-" * width]
  pm = lambda ms: f"{ms[0]:.4f} ± {ms[1]:.4f}"  # noqa: E731
  for corpus, by_arm in summary["stats"].items():
    for i, (arm, st) in enumerate(by_arm.items()):
      lines.append(f"{corpus if i == 0 else '':<16}{arm:<13}{pm(st['test_precision']):>17}"
                   f"{pm(st['test_recall']):>17}{pm(st['test_f1']):>17}"
                   f"{pm(st['dev_f1']):>17}")
    for arm, g in summary["gain"].get(corpus, {}).items():
      seeds = ", ".join(f"{x:+.4f}" for x in g["per_seed"])
      lines.append(f"{'':<16}{'gain':<13}{arm} - general: {g['mean']:+.4f} ± {g['std']:.4f} "
                   f"test F1 (per seed {seeds})")
    lines.append("-" * width)
  lines.append(f"total {summary['total_minutes']:.1f} min "
               f"(pre-training {summary['pretrain_minutes']:.1f} min)")
  lines.append("=" * width)
  return "\n".join(lines)


def _seed_list(rs: list) -> str:
  return ",".join(str(r["seed"]) for r in rs)


def plot(continuation: Mapping[str, Any] | None, runs: Mapping[str, Mapping[str, list]],
         out_png: str) -> str:
  """Continuation loss, and per-epoch dev F1 of every fine-tune: one colour per arm."""
  import matplotlib
  matplotlib.use("Agg")  # headless
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  fig, axes = plt.subplots(1, 1 + len(runs), figsize=(5 * (1 + len(runs)), 4))
  axes = np.atleast_1d(axes)
  ax = axes[0]
  if continuation:
    head, rows = continuation["head_metrics"], continuation["metrics"]
    offset = head[-1]["step"] if head else 0
    ax.plot([r["step"] for r in head], [r["mlm_loss"] for r in head], color="0.6",
            label="MLM loss, heads only")
    ax.plot([r["step"] + offset for r in rows], [r["mlm_loss"] for r in rows], color="k",
            label="MLM loss, everything")
    ev = continuation["eval"]  # steps already count the head stage
    if ev:
      ax.plot([r["step"] for r in ev], [r["eval_mlm_loss"] for r in ev], "o-",
              color="C1", label="held-out MLM loss")
    ax.legend()
  ax.set_xlabel("continued pre-training step")
  ax.set_ylabel("loss")
  ax.set_title("Continued pre-training on PubMed")
  seed_styles = ("o-", "s--", "^:", "D-.")
  arm_colors = {"general": "C0", "continued": "C3", "scratch": "C2", "random_init": "C7"}
  for ax, (corpus, by_arm) in zip(axes[1:], runs.items()):
    for arm, rs in by_arm.items():
      color = arm_colors.setdefault(arm, f"C{(len(arm_colors) + 4) % 10}")
      labelled = False
      for i, r in enumerate(rs):
        pts = [(h["epoch"], h["dev"]["f1"]) for h in r["history"] if h.get("dev")]
        if pts:
          ax.plot(*zip(*pts), seed_styles[i % len(seed_styles)], color=color, alpha=0.8,
                  label=None if labelled else f"{arm} (seeds {_seed_list(rs)})")
          labelled = True
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("fine-tuning epoch")
    ax.set_ylabel("dev entity F1")
    ax.set_title(corpus)
    if ax.get_legend_handles_labels()[0]:  # runs without dev scores draw nothing
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out_png, dpi=100)
  plt.close(fig)
  return out_png
