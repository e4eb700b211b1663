r"""The main job: does in-domain pre-training help biomedical NER? (BioBERT in miniature)

  python -m experiments.main_job --workdir=work/main_job          # ~20-30 min on 2 cores
  python -m experiments.main_job --workdir=work/quick --quick     # smoke run, a few minutes

1. pre-trains a small BERT (`mini` preset, BERT cased vocab) from scratch on the shared
   PubMed text for a fixed step budget (MLM + NSP);
2. fine-tunes it on NCBI-disease;
3. fine-tunes the same architecture from a random initialisation (0 pre-training steps)
   with the same fine-tuning budget, seed for seed;
4. prints a table (pre-training loss summary, NER precision/recall/F1 of both arms, the
   gap) and writes summary.json and curves.png next to every stage's own outputs
   (checkpoints, TensorBoard logs, metrics.jsonl, eval_results.json).

Re-running on the same workdir resumes pre-training and re-does only missing fine-tunes.
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags, logging

from experiments import recipes

_WORKDIR = flags.DEFINE_string("workdir", "work/main_job", "Where everything is written.")
_QUICK = flags.DEFINE_bool("quick", False, "Smoke run: tiny model, few steps, few examples.")
_PRESET = flags.DEFINE_string("preset", None, "Model preset (default mini; tiny with --quick).")
_PRETRAIN_STEPS = flags.DEFINE_integer("pretrain_steps", None,
                                       "Pre-training steps (the pre-training budget).")
_PRETRAIN_BATCH = flags.DEFINE_integer("pretrain_batch_size", None, "Global batch size.")
_EPOCHS = flags.DEFINE_integer("finetune_epochs", None, "NER fine-tuning epochs.")
_MAX_TRAIN = flags.DEFINE_integer("max_train_examples", None,
                                  "Cap on NER training sentences (0 = all).")
_MAX_EVAL = flags.DEFINE_integer("max_eval_examples", None,
                                 "Cap on NER dev/test sentences (0 = all).")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Fine-tuning seeds (one run per arm each).")
_CORPUS = flags.DEFINE_string("corpus", "NCBI-disease", "NER corpus under <data>/ner/.")

# Budgets measured on the 2-core reference machine (see WORKSPACE_NOTES.md): the full run
# pre-trains for ~7.5 minutes (400 steps) and fine-tunes each arm for ~4-5 minutes.
FULL = dict(preset="mini", pretrain_steps=400, pretrain_batch_size=32, finetune_epochs=3,
            max_train_examples=0, max_eval_examples=0, learning_rate=1e-3,
            finetune_learning_rate=3e-4)
QUICK = dict(preset="tiny", pretrain_steps=40, pretrain_batch_size=16, finetune_epochs=2,
             max_train_examples=500, max_eval_examples=200, learning_rate=1e-3,
             finetune_learning_rate=1e-3)


def _settings() -> dict:
  s = dict(QUICK if _QUICK.value else FULL)
  for key, flag in (("preset", _PRESET), ("pretrain_steps", _PRETRAIN_STEPS),
                    ("pretrain_batch_size", _PRETRAIN_BATCH), ("finetune_epochs", _EPOCHS),
                    ("max_train_examples", _MAX_TRAIN), ("max_eval_examples", _MAX_EVAL)):
    if flag.value is not None:
      s[key] = flag.value
  return s


def _scores(result: dict, split: str) -> dict:
  r = result.get(split, {})
  return {k: r.get(k) for k in ("precision", "recall", "f1")}


def format_table(summary: dict) -> str:
  pt = summary["pretraining"]
  lines = [
      "",
      "=" * 72,
      f"BioBERT in miniature: {summary['settings']['preset']} model, "
      f"{summary['settings']['pretrain_steps']} pre-training steps, "
      f"corpus {summary['corpus']}",
      "-" * 72,
      f"pre-training: loss {pt['first_loss']:.3f} -> {pt['last_loss']:.3f} "
      f"(MLM {pt['first_mlm_loss']:.3f} -> {pt['last_mlm_loss']:.3f}), "
      f"MLM acc {pt['last_mlm_accuracy']:.3f}, NSP acc {pt['last_nsp_accuracy']:.3f}, "
      f"{pt['minutes']:.1f} min",
      "-" * 72,
      f"{'arm':<22}{'seed':>6}{'dev F1':>10}{'test P':>10}{'test R':>10}{'test F1':>10}",
  ]
  for arm in ("pretrained", "random_init"):
    for run in summary["runs"][arm]:
      t = run["test"]
      lines.append(f"{arm:<22}{run['seed']:>6}{run['dev']['f1']:>10.4f}"
                   f"{t['precision']:>10.4f}{t['recall']:>10.4f}{t['f1']:>10.4f}")
  g = summary["gap"]
  lines += [
      "-" * 72,
      f"test F1 pretrained {g['pretrained_mean']:.4f} ± {g['pretrained_std']:.4f} | "
      f"random init {g['random_mean']:.4f} ± {g['random_std']:.4f} | "
      f"gap {g['mean_gap']:+.4f} (over {g['seeds']} seed(s))",
      "=" * 72,
  ]
  return "\n".join(lines)


def run(workdir: str, settings: dict, seeds: list[int], corpus: str) -> dict:
  os.makedirs(workdir, exist_ok=True)
  t0 = time.time()
  pre = recipes.pretrain(
      os.path.join(workdir, "pretrain"), settings["preset"],
      total_steps=settings["pretrain_steps"], batch_size=settings["pretrain_batch_size"],
      learning_rate=settings["learning_rate"],
      warmup_steps=max(1, settings["pretrain_steps"] // 10),
      log_every=max(1, settings["pretrain_steps"] // 30),
      checkpoint_every=max(1, settings["pretrain_steps"] // 3),
      eval_every=max(1, settings["pretrain_steps"] // 3), seed=0)
  pretrain_minutes = (time.time() - t0) / 60
  random_dir = recipes.random_init_checkpoint(os.path.join(workdir, "random_init"),
                                              settings["preset"], seed=0)
  runs = {"pretrained": [], "random_init": []}
  histories = {}
  for seed in seeds:
    for arm, ckpt in (("pretrained", pre["export"]), ("random_init", random_dir)):
      out = os.path.join(workdir, f"ner_{arm}_seed{seed}")
      results_path = os.path.join(out, "eval_results.json")
      if os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as f:
          result = json.load(f)
      else:
        print(f"\n--- fine-tuning {arm} (seed {seed}) on {corpus} ---", flush=True)
        result = recipes.finetune(
            out, ckpt, "ner", data_dir=recipes.ner_corpus(corpus),
            num_epochs=settings["finetune_epochs"],
            max_train_examples=settings["max_train_examples"],
            max_eval_examples=settings["max_eval_examples"], seed=seed,
            learning_rate=settings["finetune_learning_rate"], batch_size=32)
      runs[arm].append({"seed": seed, "dev": _scores(result, "dev"),
                        "test": _scores(result, "test"), "best_epoch": result["best_epoch"],
                        "workdir": out})
      histories[f"{arm} (seed {seed})"] = result.get("history", [])
  rows = pre["metrics"]
  pre_f1 = [r["test"]["f1"] for r in runs["pretrained"]]
  rnd_f1 = [r["test"]["f1"] for r in runs["random_init"]]
  (pm, ps), (rm, rs) = recipes.mean_std(pre_f1), recipes.mean_std(rnd_f1)
  summary = {
      "corpus": corpus,
      "settings": settings,
      "pretraining": {
          "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"],
          "first_mlm_loss": rows[0]["mlm_loss"], "last_mlm_loss": rows[-1]["mlm_loss"],
          "last_mlm_accuracy": rows[-1]["mlm_accuracy"],
          "last_nsp_accuracy": rows[-1]["nsp_accuracy"],
          "steps": rows[-1]["step"], "minutes": pretrain_minutes,
          "held_out": pre["eval"][-1] if pre["eval"] else None,
      },
      "runs": runs,
      "gap": {"pretrained_mean": pm, "pretrained_std": ps, "random_mean": rm,
              "random_std": rs, "mean_gap": pm - rm, "seeds": len(seeds),
              "per_seed": [a - b for a, b in zip(pre_f1, rnd_f1)]},
      "total_minutes": (time.time() - t0) / 60,
  }
  summary["plot"] = recipes.plot_curves(rows, histories, os.path.join(workdir, "curves.png"),
                                        eval_rows=pre["eval"])
  with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
  return summary


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  summary = run(os.path.abspath(_WORKDIR.value), _settings(), [int(s) for s in _SEEDS.value],
                _CORPUS.value)
  print(format_table(summary))
  print(f"everything is in {os.path.abspath(_WORKDIR.value)} "
        f"(summary.json, curves.png, tensorboard logs)")
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
