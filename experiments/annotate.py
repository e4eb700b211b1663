r"""Annotates PubMed/PMC/text with fine-tuned NER models, resumably, on every local device.

  python -m experiments.annotate --models=work/ncbi,work/multi_ner \
    --input='pubmed/baseline/*.xml.gz' --output=annotations/

A file that cannot be read, or whose reading ended early, is listed under "failed" in
summary.json, is not marked finished, and makes the run exit 1 after the other files.
One run per --output at a time (a lock names the holder).
"""
import sys

from absl import app, flags

from biobert_jax import locking, runtime
from biobert_jax.trainers import annotate
from biobert_jax.trainers.annotate_outputs import AnnotateOptionError
from biobert_jax.distributed import initialize_distributed

_MODELS = flags.DEFINE_list("models", None, "Fine-tuned model dirs (ner or multi_ner).")
_INPUT = flags.DEFINE_string("input", None, "Glob (or comma-separated globs) of inputs.")
_OUTPUT = flags.DEFINE_string("output", None, "Output directory.")
_FORMAT = flags.DEFINE_enum("format", "jsonl", list(annotate.OUTPUT_FORMATS), "Output format.")
_INPUT_FORMAT = flags.DEFINE_enum("input_format", "auto",
                                  ["auto", "pubmed_xml", "pmc", "text", "jsonl", "bioc_xml",
                                   "bioc_json"],
                                  "auto = BioC by content, else from the file name / XML root.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Windows per batch (all local devices; "
                              "rounded up to a multiple of the device count).")
_BUCKET = flags.DEFINE_integer("bucket_length", 32, "Pad batches to multiples of this.")
_BLOCK = flags.DEFINE_integer("block_docs", 1024, "Documents read and tokenised at once.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16", "float16"],
                           "Compute dtype.")
_LOG_EVERY = flags.DEFINE_float("log_every_s", 30.0, "Seconds between progress lines.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_AUTO = flags.DEFINE_bool("jax_distributed", False, "jax.distributed.initialize() with "
                          "auto-detected arguments (TPU pods, SLURM).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runtime.setup_process()  # CPU: host allocator settings; all: compile cache
  initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                         _AUTO.value)
  try:
    summary = annotate.annotate(
        _MODELS.value, _INPUT.value, _OUTPUT.value, output_format=_FORMAT.value,
        input_format=_INPUT_FORMAT.value, batch_size=_BATCH.value,
        bucket_length=_BUCKET.value, block_docs=_BLOCK.value, dtype=_DTYPE.value,
        log_every_s=_LOG_EVERY.value)
  except (AnnotateOptionError, locking.LockHeld, FileNotFoundError) as e:
    sys.exit(f"error: {e}")  # before any model loaded: one line, exit status 1
  print(f"done: {summary['documents']} documents, {summary['entities_total']} entities "
        f"({summary['files_written']} files written, {summary['files_existing']} already "
        f"there, {summary['skipped_malformed']} malformed records skipped)", flush=True)
  if summary["failed"]:  # listed in summary.json; the next run redoes them
    sys.exit(f"error: {len(summary['failed'])} file(s) not annotated (see "
             f"{_OUTPUT.value}/summary.json \"failed\"): "
             + "; ".join(summary["failed"].values())[:2000])


if __name__ == "__main__":
  flags.mark_flags_as_required(["models", "input", "output"])
  app.run(main)
