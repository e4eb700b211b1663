"""Input on gs:// (Cloud Storage emulator on 127.0.0.1): the dynamic pipeline reads a
gs:// corpus and vocabulary, BERT's static TFRecord shards are written to gs:// and read
back, and the same local input gives the same batches."""
import numpy as np
import pytest

from biobert_jax import fs
from data_pipeline import pretraining
from data_pipeline.pretraining.static_writer import write_static_examples
from data_pipeline.tokenization import load_tokenizer

from _pretrain_util import small_pipeline_config, write_corpus


def _first_batch(config, tokenizer):
  return next(pretraining.make_dataset(config, tokenizer=tokenizer).as_numpy_iterator())


@pytest.mark.slow  # TensorFlow pipelines, four of them
def test_gs_corpus_and_static_shards_match_local(bucket, data_dir, tmp_path):
  local = write_corpus(data_dir, tmp_path, 120, 2)
  for name in ("part-0.txt", "part-1.txt"):
    fs.copy(str(local / name), f"{bucket}/corpus/{name}")
  fs.copy(str(data_dir / "vocab" / "bert-base-cased-vocab.txt"), f"{bucket}/vocab.txt")
  tokenizer = load_tokenizer(f"{bucket}/vocab.txt")
  assert tokenizer.vocab == load_tokenizer(data_dir / "vocab/bert-base-cased-vocab.txt").vocab

  dynamic_gs = _first_batch(small_pipeline_config(f"{bucket}/corpus"), tokenizer)
  dynamic_local = _first_batch(small_pipeline_config(local), tokenizer)
  for key in dynamic_local:
    np.testing.assert_array_equal(dynamic_gs[key], dynamic_local[key])

  config = small_pipeline_config(local)
  config.train_files = f"{bucket}/corpus/part-0.txt"
  paths = write_static_examples(config, f"{bucket}/shards/ex-{{shard}}.tfrecord",
                                num_shards=2, tokenizer=tokenizer)
  assert paths == [f"{bucket}/shards/ex-0.tfrecord", f"{bucket}/shards/ex-1.tfrecord"]
  assert all(fs.getsize(p) > 0 for p in paths)
  config.train_files = str(local / "part-0.txt")
  local_paths = write_static_examples(config, str(tmp_path / "ex-{shard}.tfrecord"),
                                      num_shards=2, tokenizer=tokenizer)
  assert [fs.read_bytes(p) for p in paths] == [fs.read_bytes(p) for p in local_paths]
  static_gs = _first_batch(small_pipeline_config(
      f"{bucket}/shards", file_format="tfrecord", train_files=f"{bucket}/shards/ex-*"),
      tokenizer)
  static_local = _first_batch(small_pipeline_config(
      tmp_path, file_format="tfrecord", train_files=str(tmp_path / "ex-*")), tokenizer)
  for key in static_local:
    np.testing.assert_array_equal(static_gs[key], static_local[key])
