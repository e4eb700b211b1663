r"""Pre-training input pipeline throughput (dynamic, static, XML), one core and all cores.

  python -m experiments.benchmarks.pipeline --batches=20 --workers=2
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from data_pipeline import paths
from data_pipeline.corpora.pubmed_xml import read_pubmed_xml
from data_pipeline.tokenization import load_tokenizer

_THREADS = flags.DEFINE_integer("threads", -1, "1: one core; 0: all cores; -1: run both")
_BATCHES = flags.DEFINE_integer("batches", 40, "batches timed per mode (after warm-up)")
_BATCH = flags.DEFINE_integer("batch_size", 256, "per-process batch")
_SEQ = flags.DEFINE_integer("max_seq_length", 128, "sequence length")
_STEP = flags.DEFINE_float("train_step_s", 0.0, "measured base train step (s); 0 = estimate")
_TFLOPS = flags.DEFINE_float("device_tflops", 989.0, "accelerator peak (H100 bf16 dense)")
_MFU = flags.DEFINE_float("mfu", 0.4, "assumed model FLOPs utilisation for the estimate")
_WORKERS = flags.DEFINE_list("workers", ["2"], "config.num_workers settings (> 1) measured "
                             "with all cores: the dynamic pipeline in worker processes")
_TEXT = flags.DEFINE_string("text", "", "corpus of the dynamic and static modes "
                            "('' = the shared pretrain/pubmed_abstracts.txt)")
_BASE_PARAMS = 110e6  # BERT-base


def _rate(iterator, batches: int, windows: int = 3) -> tuple[float, float]:
  """Best of `windows` timed windows of `batches` batches (the machine may be shared)."""
  next(iterator)  # warm-up: graph tracing, buffers filling
  for _ in range(3):
    next(iterator)
  best = (0.0, 0.0)
  for _ in range(windows):
    tokens = 0
    start = time.perf_counter()
    for _ in range(batches):
      batch = next(iterator)
      tokens += int(batch["input_mask"].sum())
    seconds = time.perf_counter() - start
    best = max(best, (batches * len(batch["input_ids"]) / seconds, tokens / seconds))
  return best


def _measure(threads: int) -> dict:
  # TensorFlow only in the measuring child processes, not in the parent that starts them.
  from data_pipeline import pretraining
  from data_pipeline._tf import tf
  from data_pipeline.pretraining.static_writer import write_static_examples

  if threads == 1:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  config = pretraining.default_config()
  config.train_files = _TEXT.value or str(paths.data_path("pretrain", "pubmed_abstracts.txt"))
  config.vocab_path = str(paths.data_path("vocab", "bert-base-cased-vocab.txt"))
  config.batch_size = _BATCH.value
  config.max_seq_length = _SEQ.value
  config.num_threads = threads
  tokenizer = load_tokenizer(config.vocab_path)
  out = {"threads": threads or os.cpu_count()}
  out["dynamic_ex_s"], out["dynamic_tok_s"] = _rate(
      pretraining.make_dataset(config, tokenizer=tokenizer).as_numpy_iterator(),
      _BATCHES.value)
  config.whole_word_masking = True
  out["dynamic_wwm_ex_s"], _ = _rate(
      pretraining.make_dataset(config, tokenizer=tokenizer).as_numpy_iterator(),
      _BATCHES.value)
  config.whole_word_masking = False
  out["workers_ex_s"] = {}
  if threads == 0:  # worker processes split the cores between them (workers.py)
    for k in [int(w) for w in _WORKERS.value if int(w) > 1]:
      parallel = config.copy_and_resolve_references()
      parallel.num_workers, parallel.num_threads = k, 0
      it = pretraining.make_iterator(parallel)
      try:
        out["workers_ex_s"][k], _ = _rate(it, _BATCHES.value)
      finally:
        it.close()
  with tempfile.TemporaryDirectory() as tmp:
    static = config.copy_and_resolve_references()
    static.dupe_factor = 1
    write_static_examples(static, os.path.join(tmp, "ex-{shard}.tfrecord"), 4,
                          tokenizer=tokenizer)
    static.file_format, static.train_files = "tfrecord", os.path.join(tmp, "ex-*")
    out["static_ex_s"], out["static_tok_s"] = _rate(
        pretraining.make_dataset(static).as_numpy_iterator(), _BATCHES.value)
  xml = paths.data_path("pretrain", "xml_sample", "medline16n0902_sample.xml.gz")
  start = time.perf_counter()
  docs = sum(1 for _ in read_pubmed_xml(xml))
  out["xml_docs_s"] = docs / (time.perf_counter() - start)
  return out


def _train_step_rate() -> tuple[float, str]:
  if _STEP.value > 0:
    return _BATCH.value / _STEP.value, f"measured: batch {_BATCH.value} / {_STEP.value} s"
  flops = 6 * _BASE_PARAMS * _SEQ.value
  rate = _TFLOPS.value * 1e12 * _MFU.value / flops
  return rate, (f"estimate: {_TFLOPS.value:.0f} TFLOP/s x MFU {_MFU.value} / "
                f"(6 x 110M params x {_SEQ.value} tokens) per example")


def main(argv):
  del argv
  if os.environ.get("_PIPELINE_BENCH_CHILD"):
    print(json.dumps(_measure(_THREADS.value)))
    return
  settings = [1, 0] if _THREADS.value < 0 else [_THREADS.value]
  consumed, how = _train_step_rate()
  print(f"base train step consumes ~{consumed:,.0f} examples/s ({how}); target >= 5x = "
        f"{5 * consumed:,.0f} examples/s per host")
  for threads in settings:
    args = [sys.executable, "-m", "experiments.benchmarks.pipeline", f"--threads={threads}"]
    args += [f"--{f}={flags.FLAGS[f].value}" for f in ("batches", "batch_size",
                                                       "max_seq_length")]
    args += [f"--workers={','.join(_WORKERS.value)}", f"--text={_TEXT.value}"]
    env = dict(os.environ, _PIPELINE_BENCH_CHILD="1")
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    r = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"threads={r['threads']:>3}: dynamic {r['dynamic_ex_s']:8,.0f} ex/s "
          f"{r['dynamic_tok_s']:10,.0f} tok/s | dynamic+WWM {r['dynamic_wwm_ex_s']:8,.0f} ex/s"
          f" | static {r['static_ex_s']:9,.0f} ex/s {r['static_tok_s']:11,.0f} tok/s | "
          f"PubMed XML reader {r['xml_docs_s']:6,.0f} docs/s | dynamic/step = "
          f"{r['dynamic_ex_s'] / consumed:.2f}x")
    for k, rate in r["workers_ex_s"].items():
      print(f"  dynamic, num_workers={k}: {rate:8,.0f} ex/s = {rate / r['dynamic_ex_s']:.2f}x "
            f"one process, {rate / consumed:.2f}x the step")


if __name__ == "__main__":
  app.run(main)
