r"""Tokenizer throughput: our in-graph and Python faces vs HF `tokenizers`, same text.

  python -m experiments.benchmarks.tokenize [--threads=1]
"""
import json
import os
import subprocess
import sys
import time

from absl import app, flags
import tokenizers

from data_pipeline import paths, tokenization

_THREADS = flags.DEFINE_integer("threads", -1, "1: one core; 0: all cores; -1: run both")
_REPEATS = flags.DEFINE_integer("repeats", 3, "passes per measurement (best is kept)")
_BATCH = flags.DEFINE_integer("batch", 256, "documents per in-graph batch")
_TEXT = flags.DEFINE_string("text", "", "text file, one document a line "
                            "('' = the shared pretrain/pubmed_abstracts.txt)")


def _best_rate(fn, tokens: int, repeats: int) -> float:
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return tokens / best


def _measure(threads: int) -> dict:
  # TensorFlow only in the measuring child processes, not in the parent that starts them.
  from data_pipeline._tf import tf

  if threads == 1:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

  text = _TEXT.value or paths.data_path("pretrain", "pubmed_abstracts.txt")
  docs = list(tokenization.read_text_lines(text))
  results = {"threads": "1" if threads == 1 else f"all ({os.cpu_count()})",
             "documents": len(docs), "megabytes": round(sum(map(len, docs)) / 1e6, 2)}
  repeats = _REPEATS.value
  for name, filename, lowercase in (("cased", "bert-base-cased-vocab.txt", False),
                                    ("uncased", "bert-base-uncased-vocab.txt", True)):
    vocab_path = paths.data_path("vocab", filename)
    hf = tokenizers.BertWordPieceTokenizer(str(vocab_path), lowercase=lowercase,
                                           strip_accents=lowercase)
    tokens = sum(len(e.ids) - 2 for e in hf.encode_batch(docs))
    row = {"tokens": tokens}
    row["hf_tokenizers_encode_batch"] = _best_rate(lambda: hf.encode_batch(docs), tokens, repeats)

    ours = tokenization.load_tokenizer(vocab_path, lowercase=lowercase)
    start = time.perf_counter()
    ours.encode(docs)  # first pass fills the per-chunk cache
    row["python_encode_cold"] = tokens / (time.perf_counter() - start)
    row["python_encode_warm"] = _best_rate(lambda: ours.encode(docs), tokens, repeats)
    row["python_encode_with_offsets_warm"] = _best_rate(
        lambda: ours.encode_with_offsets(docs), tokens, repeats)

    options = tf.data.Options()
    if threads == 1:
      options.threading.private_threadpool_size = 1
    parallel = 1 if threads == 1 else tf.data.AUTOTUNE
    dataset = (tf.data.Dataset.from_tensor_slices(docs).batch(_BATCH.value)
               .map(ours.tokenize_tf, num_parallel_calls=parallel)
               .map(lambda r: tf.size(r.flat_values, out_type=tf.int64))
               .with_options(options))
    count = lambda: sum(int(n) for n in dataset)  # noqa: E731
    assert count() == tokens  # warm-up; the parity tests check ids, this only counts
    row["in_graph_tf_data"] = _best_rate(count, tokens, repeats)
    results[name] = {k: (round(v) if isinstance(v, float) else v) for k, v in row.items()}
  return results


def main(argv):
  del argv
  if _THREADS.value >= 0:
    print(json.dumps(_measure(_THREADS.value)))
    return
  for threads in (1, 0):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if threads == 1:
      env.update(RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
                 OMP_NUM_THREADS="1")
    else:
      env.update(TOKENIZERS_PARALLELISM="true")
    out = subprocess.run([sys.executable, "-m", "experiments.benchmarks.tokenize",
                          f"--threads={threads}", f"--repeats={_REPEATS.value}",
                          f"--batch={_BATCH.value}", f"--text={_TEXT.value}"],
                         env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"== threads: {result['threads']}  ({result['documents']} docs, "
          f"{result['megabytes']} MB)")
    for vocab in ("cased", "uncased"):
      row = result[vocab]
      hf_rate = row["hf_tokenizers_encode_batch"]
      print(f"  {vocab}: {row['tokens']} tokens")
      for key, rate in row.items():
        if key != "tokens":
          print(f"    {key:34s} {rate:>12,d} tokens/s   {rate / hf_rate:5.2f}x HF")


if __name__ == "__main__":
  app.run(main)
