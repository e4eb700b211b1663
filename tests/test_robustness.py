"""Bad input and faults: no hang, one clear line naming file/key, nothing lost.

One test per case of the robustness issue: an empty corpus is an error (not a spin), SIGTERM
ends a wait on input, configs are checked before any work, empty dev splits are decided
before training, invalid UTF-8 names file and line in every reader, checkpoint problems
say what is missing, a full disk is one line with the previous checkpoint intact, and a
UTF-8 BOM never reaches a token. The readers are fuzzed in tests/test_fuzz_readers.py;
the NaN guard's message is tested in tests/test_pretrain_loop.py.
"""
from __future__ import annotations

import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biobert_jax import checkpoints
from biobert_jax.checkpoints import CheckpointError, native
from biobert_jax.checkpoints.manager import CheckpointManager, CheckpointWriteError
from biobert_jax.configs.overrides import set_dotted
from biobert_jax.train import loop
from biobert_jax.train.metrics_writer import MetricsWriter
from biobert_jax.trainers import predict, pretrain_data, validation
from data_pipeline import pretraining
from data_pipeline.corpora import read_documents
from data_pipeline.errors import InputError
from data_pipeline.pretraining.static_writer import write_static_examples
from data_pipeline.tasks import chemprot, ner, qa
from data_pipeline.tasks import re as re_reader
from experiments.configs import finetune as finetune_configs
from experiments.configs import pretrain as pretrain_configs

REPO = pathlib.Path(__file__).resolve().parent.parent
TESTDATA = REPO / "tests" / "testdata"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "gene", "cancer", "a", "b",
         "##s", "."]


@pytest.fixture()
def vocab(tmp_path) -> pathlib.Path:
  path = tmp_path / "vocab.txt"
  path.write_text("\n".join(VOCAB) + "\n")
  return path


def _run_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
  """Runs `code` in a fresh interpreter; the timeout only guards against a hang."""
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


# ------------------------------------------------------------ 1. no hang on empty input


def test_corpus_without_documents_is_an_error_not_a_hang(tmp_path, vocab):
  """Empty text, a PMC file without abstract/body, an empty TFRecord shard, a host
  without documents: each one line naming the files, where all of them used to spin."""
  (tmp_path / "empty.txt").write_text("")
  (tmp_path / "nobody.nxml").write_text(
      '<article><front><article-meta><article-id pub-id-type="pmc">7</article-id>'
      '<title-group><article-title>Only a title</article-title></title-group>'
      '</article-meta></front></article>')
  (tmp_path / "empty.tfrecord").write_bytes(b"")
  (tmp_path / "one.txt").write_text("the gene.\n")
  result = _run_python(f"""
      from data_pipeline import pretraining
      from data_pipeline.errors import InputError
      from data_pipeline.pretraining.static_writer import write_static_examples
      cases = [("empty.txt", "text_doc_per_line", 0, 1), ("nobody.nxml", "pmc", 0, 1),
               ("empty.tfrecord", "tfrecord", 0, 1), ("one.txt", "text_doc_per_line", 1, 2)]
      for name, fmt, index, count in cases:
        config = pretraining.default_config()
        config.update(train_files="{tmp_path}/" + name, file_format=fmt,
                      vocab_path="{vocab}", batch_size=2, holdout_every=0)
        try:
          next(pretraining.make_iterator(config, index, count))
          print("NO ERROR", name)
        except InputError as e:
          print("ERROR", e)
      config = pretraining.default_config()
      config.update(train_files="{tmp_path}/empty.txt", vocab_path="{vocab}", dupe_factor=1)
      try:
        write_static_examples(config, "{tmp_path}/out-{{shard}}.tfrecord", 2)
        print("NO ERROR static")
      except InputError as e:
        print("ERROR", e)
      """)
  lines = [l for l in result.stdout.splitlines() if l.startswith(("ERROR", "NO ERROR"))]
  assert result.returncode == 0, result.stderr[-3000:]
  assert len(lines) == 5 and all(l.startswith("ERROR") for l in lines), result.stdout
  assert "empty.txt" in lines[0] and "no usable document" in lines[0]
  assert "nobody.nxml" in lines[1] and "1 records without text" in lines[1]
  assert "empty.tfrecord" in lines[2] and "0 record(s)" in lines[2]
  assert "one.txt" in lines[3] and "process 1 of 2" in lines[3]
  assert "1 for other processes" in lines[3]
  assert "empty.txt" in lines[4] and not list(tmp_path.glob("out-*.tfrecord"))


def test_static_writer_refuses_empty_shards(tmp_path, vocab):
  """Fewer examples than shards: the shards are removed and the error says why."""
  (tmp_path / "one.txt").write_text("the gene.\n")
  config = pretraining.default_config()
  config.update(train_files=f"{tmp_path}/one.txt", vocab_path=str(vocab), dupe_factor=1,
                holdout_every=0)
  with pytest.raises(InputError, match="for 4 shards; no shard may be empty"):
    write_static_examples(config, f"{tmp_path}/out-{{shard}}.tfrecord", 4)
  assert not list(tmp_path.glob("out-*.tfrecord"))


class _BlockingSource:
  """A batch source whose next() never returns (input that never arrives)."""

  def __init__(self):
    self.release = threading.Event()

  def __next__(self):
    self.release.wait()
    raise StopIteration

  def get_state(self):
    return {}


def test_sigterm_ends_a_wait_on_input():
  source = _BlockingSource()
  batches = pretrain_data.InterruptibleBatches(source, poll_seconds=0.05)
  flag = loop.PreemptionFlag().install()
  timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
  try:
    timer.start()
    with pytest.raises(loop.InputWaitInterrupted, match="SIGTERM while waiting "
                       "for input batch 1"):
      next(batches)
    assert flag.is_set()
  finally:
    timer.cancel()
    flag.uninstall()
    source.release.set()


class _StallingSource:
  """Delivers `good` batches, then blocks; its state counts what next() has started."""

  def __init__(self, good: int):
    self.good, self.started = good, 0
    self.release = threading.Event()

  def __next__(self):
    self.started += 1
    if self.started > self.good:
      self.release.wait()
    return {"n": np.float32(1)}

  def get_state(self):
    return {"batches_consumed": self.started}


def test_sigterm_while_waiting_on_input_saves_the_delivered_steps(tmp_path):
  """The loop saves on an interrupted wait, with the state of the batches delivered (not
  the one whose fetch was abandoned), so a restart resumes exactly."""
  source = _StallingSource(good=3)
  batches = pretrain_data.InterruptibleBatches(source, poll_seconds=0.05)
  manager = CheckpointManager(tmp_path / "ckpt", keep=5)
  writer = MetricsWriter(str(tmp_path), "metrics")

  def train_step(state, batch):
    step = state["step"] + 1
    loss = 1.0 / step
    metrics = {k: loss for k in ("loss", "grad_norm", "learning_rate")}
    return {"step": step}, dict(metrics, num_tokens=batch["n"], is_finite=True)

  flag = loop.PreemptionFlag().install()
  timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
  try:
    timer.start()
    result = loop.run(state={"step": jnp.int32(0)}, train_step=train_step, batches=batches,
                      to_global=lambda b: b, data_state=batches.get_state,
                      checkpoints=manager, writer=writer,
                      config=loop.LoopConfig(total_steps=10, log_every=1,
                                             checkpoint_every=100),
                      preemption=flag, log_fn=lambda line: None)
  finally:
    timer.cancel()
    flag.uninstall()
    source.release.set()
  assert result.preempted and result.final_step == 3
  assert manager.all_steps() == [3]
  _, data = manager.restore(3, {"step": jnp.int32(0)})
  assert data == {"batches_consumed": 3}  # the 4th fetch had started; it is not counted
  manager.close()


def test_interruptible_batches_pass_batches_errors_and_state_through():
  batches = pretrain_data.InterruptibleBatches(pretrain_data.SyntheticBatches(
      batch_size=2, seq_len=8, num_predictions=2, vocab_size=30, seed=0))
  first = next(batches)
  assert first["input_ids"].shape == (2, 8) and batches.get_state()["batches_consumed"] == 1
  with pytest.raises(StopIteration):
    next(pretrain_data.InterruptibleBatches(iter([])))


@pytest.mark.slow
def test_sigterm_stops_pretraining_waiting_on_a_fifo(tmp_path, vocab):
  """End to end: the corpus is a FIFO nobody writes; SIGTERM ends the run at once, as a
  preemption (saved, exit 0)."""
  fifo = tmp_path / "corpus.txt"
  os.mkfifo(fifo)
  args = [sys.executable, "-m", "experiments.pretrain",
          "--config=experiments/configs/pretrain.py:tiny", f"--workdir={tmp_path / 'w'}",
          f"--config.vocab_path={vocab}", f"--config.train_files={fifo}",
          "--config.eval_steps=0", "--config.batch_size=8", "--config.total_steps=3",
          "--config.max_seq_length=16", "--config.max_predictions_per_seq=2",
          "--config.tensorboard=False"]
  process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  try:
    writer = os.open(fifo, os.O_WRONLY)  # returns once the trainer opened it to read
    time.sleep(2)  # let the main thread reach its polling wait (no timing is asserted)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    os.close(writer)
  finally:
    if process.poll() is None:
      process.kill()
  assert process.returncode == 0, output[-3000:]
  assert "SIGTERM while waiting for input" in output, output[-3000:]
  assert "preempted at step 0: checkpoint saved" in output, output[-3000:]
  assert (tmp_path / "w" / "checkpoints" / "0").is_dir()


# ------------------------------------------------------------ 2. configs checked first


@pytest.mark.parametrize("key,value,message", [
    ("batch_size", -4, "config.batch_size=-4: must be an integer >= 1"),
    ("batch_size", 0, "config.batch_size=0: must be an integer >= 1"),
    ("learning_rate", -1e-4, "config.learning_rate=-0.0001: must be >= 0"),
    ("total_steps", 0, "config.total_steps=0"),
    ("dtype", "fp8", "config.dtype='fp8': must be one of 'bfloat16', 'float16', 'float32'"),
    ("optimizer", "sgd", "config.optimizer='sgd': must be one of 'adamw', 'lamb'"),
    ("data.file_format", "csv", "config.data.file_format='csv'"),
    ("data.masked_lm_prob", 1.5, "config.data.masked_lm_prob=1.5"),
    ("mesh.data", 3, "config.mesh: mesh"),
    ("max_predictions_per_seq", 200, "must be <= max_seq_length"),
    ("nsp_weight", -1.0, "config.nsp_weight=-1.0: must be >= 0"),
    ("train_files", "/no/such/*.txt", "no file matches '/no/such/*.txt'"),
])
def test_pretrain_config_errors_name_key_value_and_rule(key, value, message):
  config = pretrain_configs.get_config("tiny")
  set_dotted(config, key, value)
  with pytest.raises(validation.ConfigError) as error:
    validation.validate_pretrain_config(config)
  assert message in str(error.value)


def test_pretrain_data_keys_reach_the_pipeline():
  # Every trainer `data.*` key is a pipeline setting, and a change reaches the pipeline
  # (whole-word masking was settable in the pipeline but not from a trainer config).
  config = pretrain_configs.get_config("tiny")
  assert set(config.data) <= set(pretraining.default_config())
  config.data.whole_word_masking = True
  assert pretrain_data.pipeline_config(config, 1).whole_word_masking is True


def test_pretrain_refuses_a_negative_batch_before_any_work(tmp_path):
  from biobert_jax.trainers import pretrain  # pylint: disable=import-outside-toplevel
  config = pretrain_configs.get_config("tiny")
  config.batch_size = -4
  with pytest.raises(validation.ConfigError, match="config.batch_size=-4"):
    pretrain.train(config, str(tmp_path / "work"))
  assert not (tmp_path / "work").exists()


def test_pretrain_positions_checked_against_init_checkpoint(tmp_path):
  (tmp_path / "bert_config.json").write_text(json.dumps({"max_position_embeddings": 128}))
  config = pretrain_configs.get_config("tiny")
  config.update(init_checkpoint=str(tmp_path), max_seq_length=512)
  with pytest.raises(validation.ConfigError, match=r"max_seq_length=512: .*128 position"):
    validation.validate_pretrain_config(config)


def test_pretrain_batch_must_divide_over_the_mesh():
  config = pretrain_configs.get_config("tiny")
  config.update(batch_size=6)
  config.mesh.update(data=1, fsdp=4, tensor=1)
  with pytest.raises(validation.ConfigError, match=r"batch_size=6: .*= 1 x 4 x 1 = 4"):
    validation.validate_pretrain_config(config, device_count=4, process_count=1)


@pytest.mark.parametrize("task,key,value,message", [
    ("ner", "batch_size", -4, "config.batch_size=-4: must be an integer >= 1"),
    ("ner", "batch_size", 0, "config.batch_size=0"),
    ("ner", "num_epochs", 0, "config.num_epochs=0"),
    ("ner", "learning_rate", float("nan"), "config.learning_rate=nan: must be finite"),
    ("ner", "ner.scheme", "bio", "config.ner.scheme='bio': must be one of 'iob2'"),
    ("re", "re.pooling", "mean", "config.re.pooling='mean'"),
    ("re", "re.dev_fraction", 1.0, "config.re.dev_fraction=1.0"),
    ("qa", "qa.merge", "avg", "config.qa.merge='avg'"),
    ("qa", "max_seq_length", 40, "qa.max_query_length + 4 = 68"),
    ("ner", "task", "pos", "config.task='pos': must be one of 'ner', 're', 'qa'"),
    ("ner", "warmup_proportion", 1.5, "config.warmup_proportion=1.5"),
])
def test_finetune_config_errors_name_key_value_and_rule(task, key, value, message):
  config = finetune_configs.get_config(task)
  set_dotted(config, key, value)
  with pytest.raises(validation.ConfigError) as error:
    validation.validate_finetune_config(config)
  assert message in str(error.value)


def test_shipped_configs_validate():
  for preset in ("tiny", "base", "large"):
    validation.validate_pretrain_config(pretrain_configs.get_config(preset), device_count=8,
                                        process_count=1)
  for task in ("ner", "re", "qa"):
    validation.validate_finetune_config(finetune_configs.get_config(task))


def test_finetune_refuses_a_negative_batch_before_any_work(tmp_path):
  from biobert_jax.trainers import finetune  # pylint: disable=import-outside-toplevel
  config = finetune_configs.get_config("ner")
  config.batch_size = -4
  with pytest.raises(validation.ConfigError, match="config.batch_size=-4"):
    finetune.run(config, str(tmp_path / "work"))
  assert not (tmp_path / "work").exists()


# ------------------------------------------------------------ 3. empty splits


class _Split:
  def __init__(self, n):
    self.num_features = n


def test_empty_dev_split_means_no_selection_stated():
  config = finetune_configs.get_config("ner")
  splits = {"train": _Split(4), "dev": _Split(0), "test": _Split(3)}
  notes = validation.check_splits(splits, config)
  assert sorted(splits) == ["test", "train"]
  assert notes["model_selection"].startswith("none: no dev split")
  assert "test_split" not in notes


def test_empty_dev_split_is_an_error_when_asked_for():
  config = finetune_configs.get_config("re")
  config.re.dev_fraction = 0.1
  with pytest.raises(validation.ConfigError, match=r"config.re.dev_fraction=0.1: asks for"):
    validation.check_splits({"train": _Split(4), "dev": _Split(0)}, config)
  with pytest.raises(validation.ConfigError, match="train split has no examples"):
    validation.check_splits({"train": _Split(0)}, finetune_configs.get_config("ner"))


def _ner_corpus(root: pathlib.Path, dev: str) -> None:
  sentence = "the\tO\ngene\tB-Gene\ncancer\tB-Disease\n.\tO\n"
  root.mkdir()
  (root / "train.tsv").write_text("\n".join([sentence] * 16))
  (root / "devel.tsv").write_text(dev)
  (root / "test.tsv").write_text("\n".join([sentence] * 2))


@pytest.mark.slow
def test_finetune_with_an_empty_dev_file_trains_and_says_so(tmp_path):
  """End to end: the run finishes, eval_results.json states there was no selection."""
  from biobert_jax.config import BertConfig  # pylint: disable=import-outside-toplevel
  from biobert_jax.models import BertForPreTraining, init_params  # pylint: disable=import-outside-toplevel
  from biobert_jax.trainers import finetune  # pylint: disable=import-outside-toplevel
  _ner_corpus(tmp_path / "ner", dev="")
  ckpt = tmp_path / "ckpt"
  bert = BertConfig.preset("tiny", vocab_size=len(VOCAB), hidden_size=32,
                           num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=32)
  native.save_native(bert, init_params(BertForPreTraining(bert), jax.random.key(0)), ckpt)
  (ckpt / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
  config = finetune_configs.get_config("ner")
  config.update(data_dir=str(tmp_path / "ner"), init_checkpoint=str(ckpt), num_epochs=1,
                batch_size=8, eval_batch_size=8, max_seq_length=16, doc_stride=8,
                bucket_length=0, group_by_length=0, log_every=1)
  results = finetune.run(config, str(tmp_path / "work"),
                         compiler_options={"xla_backend_optimization_level": 0})
  saved = json.loads((tmp_path / "work" / "eval_results.json").read_text())
  assert "dev" not in saved and "f1" in json.dumps(saved["test"])
  assert saved["model_selection"].startswith("none: no dev split")
  assert results["best_epoch"] == 1


# ------------------------------------------------------------ 4. invalid UTF-8, every reader


def _bad_utf8(tmp_path, name: str, lines: list[bytes], bad_line: int) -> pathlib.Path:
  path = tmp_path / name
  data = list(lines)
  data[bad_line - 1] = data[bad_line - 1].replace(b"X", b"\xff\xfe")
  path.write_bytes(b"\n".join(data) + b"\n")
  return path


def _chemprot_with_bad_entities(tmp_path):
  source = TESTDATA / "re_chemprot_raw" / "chemprot_training"
  files = chemprot.split_files(tmp_path, "train")
  files["abstracts"].parent.mkdir(parents=True)
  for key, target in files.items():
    target.write_bytes(source.joinpath(target.name).read_bytes())
  raw = files["entities"].read_bytes().split(b"\n")
  raw[1] = raw[1] + b"\xff"
  files["entities"].write_bytes(b"\n".join(raw))
  return files["entities"], lambda _: chemprot.build_split(tmp_path, "train")


READ_BAD_UTF8 = {
    "ner": (lambda p: ner.read_conll(p), "ner.tsv",
            [b"the\tO", b"geneX\tB-Gene", b""], 2),
    "re": (re_reader.read_relation_tsv, "re.tsv", [b"a @GENE$ b\t1", b"cX @GENE$\t0"], 2),
    "squad": (qa.read_squad, "qa.json", [b'{"data": [', b'{"title": "X"}]}'], 2),
    "predict_jsonl": (predict.read_records, "in.jsonl", [b'{"text": "a"}', b'{"text": "X"}'],
                      2),
    "predict_text": (predict.read_records, "in.txt", [b"fine", b"broken X"], 2),
    "text_corpus": (lambda p: list(read_documents(p, "text_doc_per_line")), "c.txt",
                    [b"One. Two.", b"Three X."], 2),
    "bert_corpus": (lambda p: list(read_documents(p, "text_bert")), "b.txt",
                    [b"One.", b"", b"Three X."], 3),
    "pubmed_xml": (lambda p: list(read_documents(p, "pubmed_xml")), "p.xml",
                   [b"<PubmedArticleSet>", b"<PubmedArticle>X</PubmedArticle>",
                    b"</PubmedArticleSet>"], 2),
}


@pytest.mark.parametrize("reader", sorted(READ_BAD_UTF8) + ["chemprot"])
def test_invalid_utf8_names_file_and_line(tmp_path, reader):
  if reader == "chemprot":
    path, read = _chemprot_with_bad_entities(tmp_path)
    line = 2
  else:
    read, name, lines, line = READ_BAD_UTF8[reader]
    path = _bad_utf8(tmp_path, name, lines, line)
  with pytest.raises(InputError, match=rf"^{path}:{line}\b"):
    read(path)


def test_broken_jsonl_line_names_file_and_line(tmp_path):
  path = tmp_path / "in.jsonl"
  path.write_text('{"text": "ok"}\n\n{"text": "broken"\n')
  with pytest.raises(InputError, match=rf"^{path}:3: not valid JSON"):
    predict.read_records(str(path))


# ------------------------------------------------------------ 5. checkpoint diagnosis


def _tiny_native(tmp_path) -> pathlib.Path:
  from biobert_jax.config import BertConfig  # pylint: disable=import-outside-toplevel
  bert = BertConfig.preset("tiny", vocab_size=16, hidden_size=8, num_attention_heads=2,
                           intermediate_size=16, max_position_embeddings=16,
                           num_hidden_layers=1)
  params = {"encoder": {"w": np.ones((4, 4), np.float32)}}
  return native.save_native(bert, params, tmp_path / "native")


def test_tf1_directory_without_index_says_so(tmp_path):
  (tmp_path / "bert_config.json").write_text("{}")
  (tmp_path / "model.ckpt-100.data-00000-of-00001").write_bytes(b"\0")
  for path in (tmp_path, tmp_path / "model.ckpt-100"):
    with pytest.raises(CheckpointError, match=r"model.ckpt-100.data-00000-of-00001\) but no "
                       r"model.ckpt-100.index"):
      checkpoints.load(path)


@pytest.mark.parametrize("missing", ["_METADATA", "manifest.ocdbt", "ocdbt.process_0"])
def test_native_checkpoint_missing_a_file_names_it(tmp_path, missing):
  out = _tiny_native(tmp_path)
  target = out / "params" / missing
  if target.is_dir():
    import shutil  # pylint: disable=import-outside-toplevel
    shutil.rmtree(target)
  else:
    target.unlink()
  with pytest.raises(CheckpointError, match=rf"missing {target}"):
    checkpoints.load(out)


def test_incomplete_training_step_is_named_on_resume(tmp_path):
  manager = CheckpointManager(tmp_path / "ck", async_save=False)
  state = {"w": np.ones((3,), np.float32)}
  manager.save(1, state)
  manager.close()
  (tmp_path / "ck" / "1" / "state" / "_METADATA").unlink()
  manager = CheckpointManager(tmp_path / "ck", read_only=True)
  target = {"w": jax.ShapeDtypeStruct((3,), np.float32,
                                      sharding=jax.sharding.SingleDeviceSharding(
                                          jax.devices()[0]))}
  with pytest.raises(CheckpointError, match=r"step 1 is incomplete, missing .*_METADATA"):
    manager.restore(1, target)
  with pytest.raises(CheckpointError, match=r"missing .*_METADATA"):
    manager.restore_params(1)


@pytest.mark.parametrize("async_save", [True, False])
def test_full_disk_is_one_line_and_keeps_the_previous_step(tmp_path, async_save):
  """A real 1 MiB tmpfs when we may mount one (CI runs as root); otherwise orbax's save
  fails the way tensorstore reports a full disk."""
  mount = tmp_path / "small_disk"
  mount.mkdir()
  mounted = os.geteuid() == 0 and subprocess.run(
      ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
      capture_output=True).returncode == 0
  try:
    manager = CheckpointManager(mount / "ck", async_save=async_save)
    manager.save(1, {"params": {"w": np.ones((100, 100), np.float32)}}, {"batches": 1})
    manager.wait()
    if not mounted:
      def full(*args, **kwargs):
        raise ValueError("RESOURCE_EXHAUSTED: Failed to write 4000000 bytes: No space left "
                         "on device [os_error_code='28']")
      manager._manager.save = full  # pylint: disable=protected-access
    big = {"params": {"w": np.random.default_rng(0).random((1000, 1000), np.float32)}}
    with pytest.raises(CheckpointWriteError) as error:
      manager.save(2, big, {"batches": 2})
      manager.wait()
    message = str(error.value)
    assert "\n" not in message and error.value.errno == errno.ENOSPC
    assert message.startswith(f"{mount / 'ck'}: could not write step 2: No space left")
    assert "step 1 is still the latest complete checkpoint" in message
    manager.close()
    reader = CheckpointManager(mount / "ck", read_only=True)
    assert reader.latest_step() == 1
    step, params = reader.restore_params()
    assert step == 1 and np.array_equal(params["w"], np.ones((100, 100), np.float32))
    reader.close()
  finally:
    if mounted:
      subprocess.run(["umount", str(mount)], check=False)


# ------------------------------------------------------------ 6. the BOM


def test_bom_never_reaches_a_token(tmp_path):
  bom = "\ufeff"
  (tmp_path / "n.tsv").write_text(bom + "Familial\tB-Disease\ncancer\tI-Disease\n")
  assert ner.read_conll(tmp_path / "n.tsv")[0][0].words == ["Familial", "cancer"]
  (tmp_path / "r.tsv").write_text(bom + "index\tsentence\tlabel\n1\ta @GENE$ b\t1\n")
  assert re_reader.read_relation_tsv(tmp_path / "r.tsv")[0].guid == "1"
  (tmp_path / "q.json").write_text(bom + json.dumps({"data": []}))
  assert qa.read_squad(tmp_path / "q.json") == []
  (tmp_path / "in.jsonl").write_text(bom + '{"text": "BRCA1"}\n')
  assert predict.read_records(str(tmp_path / "in.jsonl")) == [{"text": "BRCA1"}]
  (tmp_path / "in.txt").write_text(bom + "BRCA1 mutations\n")
  assert predict.read_records(str(tmp_path / "in.txt")) == [{"text": "BRCA1 mutations"}]
  (tmp_path / "c.txt").write_text(bom + "BRCA1 is a gene.\n")
  doc = next(read_documents(tmp_path / "c.txt", "text_doc_per_line"))
  assert doc.sentences == ("BRCA1 is a gene.",)


def test_lines_break_at_newline_only(tmp_path):
  """U+2028, U+0085 and form feeds inside a sentence are text, not line ends."""
  (tmp_path / "r.tsv").write_text("a\u2028b\x0c@GENE$\u0085c\t1\n", encoding="utf-8")
  rows = re_reader.read_relation_tsv(tmp_path / "r.tsv")
  assert [r.text for r in rows] == ["a\u2028b\x0c@GENE$\u0085c"]
