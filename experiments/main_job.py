r"""The main job, BioBERT's recipe at CPU scale (logic: biobert_jax/trainers/recipe.py).

  python -m experiments.main_job --workdir=work/main_job [--quick]
"""
from __future__ import annotations

import os

import jax
from absl import app, flags, logging

from biobert_jax import runtime
from biobert_jax.configs import overrides
from biobert_jax.trainers import recipe

_WORKDIR = flags.DEFINE_string("workdir", "work/main_job", "Where everything is written.")
_QUICK = flags.DEFINE_bool("quick", False, "Smoke run: 1 seed, tiny budgets.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "General-domain HF/TF1/native checkpoint "
                                  "('' = the embedded MiniLM-L6).")
_ARMS = flags.DEFINE_list("arms", list(recipe.DEFAULT_ARMS), f"Subset of {list(recipe.ARMS)}.")
_CORPORA = flags.DEFINE_list("corpora", list(recipe.DEFAULT_CORPORA), "NER corpora.")
_SEEDS = flags.DEFINE_list("seeds", None, "Fine-tuning seeds (default 0,1,2; 0 with --quick).")
_PUBMED = flags.DEFINE_string("pubmed_files", "", "Continuation text: globs, comma-separated "
                              "('' = the shared pubmed_abstracts.txt).")
_SET = flags.DEFINE_multi_string("set", [], "Budget override KEY=VALUE (keys of recipe.FULL).")
_PRETRAIN = flags.DEFINE_multi_string("pretrain", [], "Pre-training config override "
                                      "KEY=VALUE, e.g. mesh.fsdp=-1, data.file_format=pubmed_xml.")


def _parse(pairs: list[str], base: dict | None) -> dict:
  """KEY=VALUE pairs (values as Python literals: 1e-4, True, (1, 2); else strings)."""
  out = {}
  for pair in pairs:
    try:
      out.update(overrides.parse_assignments([pair]))
      known = base is None or pair.partition("=")[0] in base
    except ValueError:
      known = False
    if not known:
      raise app.UsageError(f"bad override {pair!r}: expected KEY=VALUE"
                           + (f" with KEY in {sorted(base)}" if base is not None else ""))
  return out


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  runtime.setup_process(cache=False)
  # The 12 fine-tunes compile the same programs (same shapes, fresh closures): a persistent
  # cache in the workdir compiles each once (and again never, on a resumed run).
  jax.config.update("jax_compilation_cache_dir", os.path.join(_WORKDIR.value, "xla_cache"))
  settings = dict(recipe.QUICK if _QUICK.value else recipe.FULL)
  settings.update(_parse(_SET.value, settings))
  seeds = _SEEDS.value or (["0"] if _QUICK.value else ["0", "1", "2"])
  summary = recipe.run(
      _WORKDIR.value, settings, checkpoint=_CHECKPOINT.value, arms=_ARMS.value,
      corpora=_CORPORA.value, seeds=[int(s) for s in seeds],
      pretrain_extra=_parse(_PRETRAIN.value, None), pubmed_files=_PUBMED.value)
  print(recipe.format_table(summary), flush=True)
  print(f"everything is in {os.path.abspath(_WORKDIR.value)} (summary.json, curves.png, "
        "TensorBoard logs under each stage)", flush=True)
  if _QUICK.value:  # its few fine-tuning steps tag little or nothing: F1 near 0 is expected
    print("--quick is a smoke run of every stage; its scores are not a result (make demo "
          "is the measurement)", flush=True)


if __name__ == "__main__":
  app.run(main)
