"""End to end: NER fine-tuning through the launcher's library on a few NCBI sentences."""
import json

import jax
import pytest
from seqeval import metrics as seqeval_metrics

from biobert_jax.checkpoints.native import save_native
from biobert_jax.config import BertConfig
from biobert_jax.models import BertForPreTraining, init_params
from data_pipeline.tasks import ner as ner_data
from biobert_jax.trainers import finetune as finetune_lib
from biobert_jax.trainers import finetune_batches
from experiments.configs import finetune as finetune_config

NUM_TRAIN, NUM_EVAL = 48, 16
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# End-to-end fine-tuning runs: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

def small_vocab(sentences) -> list[str]:
  """Specials + lower-cased words + single characters (so every word can be tokenised)."""
  words = sorted({w.lower() for s in sentences for w in s.words})
  chars = sorted({c for w in words for c in w})
  return SPECIALS + [c for c in chars] + [f"##{c}" for c in chars] + [
      w for w in words if len(w) > 1]


@pytest.fixture(scope="module")
def finetuned(data_dir, tmp_path_factory):
  """A tiny random 'pre-trained' checkpoint (native format, MLM/NSP heads) fine-tuned."""
  corpus = data_dir / "ner" / "NCBI-disease"
  sentences = []
  for split in ("train.tsv", "devel.tsv", "test.tsv"):
    sentences += ner_data.read_conll(corpus / split, max_sentences=NUM_TRAIN)[0]
  ckpt = tmp_path_factory.mktemp("ckpt")
  (ckpt / "vocab.txt").write_text("\n".join(small_vocab(sentences)) + "\n")
  bert = BertConfig.preset("tiny", vocab_size=len(small_vocab(sentences)), hidden_size=64,
                           num_attention_heads=2, intermediate_size=128,
                           max_position_embeddings=64)
  save_native(bert, init_params(BertForPreTraining(bert), jax.random.key(0)), ckpt)
  config = finetune_config.get_config("ner")
  config.update(data_dir=str(corpus), init_checkpoint=str(ckpt), lowercase=-1,
                max_train_examples=NUM_TRAIN, max_eval_examples=NUM_EVAL, num_epochs=3,
                batch_size=16, eval_batch_size=8, max_seq_length=32, doc_stride=16,
                bucket_length=0, log_every=1, reinit=("^encoder/pooler/",), export_hf=True)
  config.optim.update(learning_rate=2e-3, warmup_proportion=0.0)
  workdir = tmp_path_factory.mktemp("work")
  results = finetune_lib.run(config, str(workdir),
                             compiler_options={"xla_backend_optimization_level": 0})
  return workdir, results, corpus


def test_model_card_and_transformers_export(finetuned):
  """model/README.md and model_hf/ (--config.export_hf) hold the run's facts."""
  workdir, results, corpus = finetuned
  card = (workdir / "model" / "README.md").read_text()
  assert card.startswith("---\nlibrary_name: biobert-jax\npipeline_tag: token-classification")
  assert "- ncbi_disease" in card and f"| test | {results['test']['precision']:.4f}" in card
  assert "O, B-Disease, I-Disease" in card and "biobert-jax version" in card
  assert '"num_epochs": 3' in card and str(corpus) in card
  hf_config = json.loads((workdir / "model_hf" / "config.json").read_text())
  assert hf_config["architectures"] == ["BertForTokenClassification"]
  assert hf_config["id2label"] == {"0": "O", "1": "B-Disease", "2": "I-Disease"}
  assert (workdir / "model_hf" / "README.md").read_text().startswith(
      "---\nlibrary_name: transformers")
  info = json.loads((workdir / "model" / "task.json").read_text())
  assert info["command"] and info["library_version"]


def test_writes_everything(finetuned):
  workdir, results, _ = finetuned
  for name in ("eval_results.json", "surgery_report.json", "metrics.jsonl", "config.json",
               "predictions_dev.conll", "predictions_test.conll", "model/task.json",
               "model/vocab.txt", "model/bert_config.json"):
    assert (workdir / name).exists(), name
  assert list((workdir / "tensorboard").iterdir())
  on_disk = json.loads((workdir / "eval_results.json").read_text())
  assert on_disk["best_epoch"] in (1, 2, 3) and len(on_disk["history"]) == 3
  assert 0 < on_disk["train_seconds"] <= on_disk["run_seconds"]
  for split in ("dev", "test"):
    scores = on_disk[split]
    assert set(scores) >= {"precision", "recall", "f1", "accuracy", "per_type"}
    assert set(scores["per_type"]) == {"Disease"}
    assert 0.0 <= scores["f1"] <= 1.0
  best = on_disk["history"][on_disk["best_epoch"] - 1]["dev"]["f1"]
  assert best == max(h["dev"]["f1"] for h in on_disk["history"])
  assert on_disk["dev"]["f1"] == pytest.approx(best)  # the best params were kept
  report = json.loads((workdir / "surgery_report.json").read_text())
  assert "cls/predictions/output_bias" in report["dropped"]
  assert set(report["new"]) == {"classifier/kernel", "classifier/bias"}
  assert "encoder/pooler/dense/kernel" in report["reinitialized"]
  info = json.loads((workdir / "model" / "task.json").read_text())
  assert info["labels"] == ["O", "B-Disease", "I-Disease"] and info["lowercase"] is True
  assert info["task"] == "ner" and info["max_seq_length"] == 32


def test_loss_decreases(finetuned):
  workdir, _, _ = finetuned
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  losses = [l["loss"] for l in lines]
  assert len(losses) == 3 * (NUM_TRAIN // 16) or len(losses) >= 6
  assert sum(losses[-2:]) / 2 < 0.8 * sum(losses[:2]) / 2


def test_conll_predictions_match_reported_scores(finetuned):
  """Re-score the written CoNLL file with seqeval: same F1 as eval_results.json."""
  workdir, results, corpus = finetuned
  gold_sentences, _ = ner_data.read_conll(corpus / "test.tsv", max_sentences=NUM_EVAL)
  blocks = (workdir / "predictions_test.conll").read_text().strip("\n").split("\n\n")
  assert len(blocks) == NUM_EVAL  # every sentence, every word: nothing dropped
  gold, pred = [], []
  for block, sentence in zip(blocks, gold_sentences):
    rows = [line.split(" ") for line in block.split("\n")]
    assert [r[0] for r in rows] == sentence.words
    assert [r[1] for r in rows] == sentence.tags
    gold.append([r[1] for r in rows])
    pred.append([r[2] for r in rows])
  assert results["test"]["f1"] == pytest.approx(seqeval_metrics.f1_score(gold, pred))
  assert results["test"]["num_gold"] == sum(len(seqeval_metrics.sequence_labeling
                                                .get_entities(g)) for g in gold)


def test_predict_split_buckets_keep_feature_order():
  """Sorted, trimmed evaluation batches give the same outputs, in feature order."""
  import numpy as np
  from biobert_jax.tasks.base import SplitData

  rng = np.random.default_rng(0)
  lengths = rng.integers(2, 40, size=23)
  mask = (np.arange(40)[None] < lengths[:, None]).astype(np.int32)
  ids = rng.integers(1, 99, size=(23, 40)) * mask
  split = SplitData({"input_ids": ids, "attention_mask": mask, "sentence": np.arange(23)}, [])
  seen_lengths = set()

  def fake_step(params, batch):  # per-position outputs that depend only on the row's ids
    del params
    seen_lengths.add(batch["input_ids"].shape[1])
    return {"probs": batch["input_ids"] * 2.0, "row": batch["sentence"]}

  full = finetune_batches.predict_split(fake_step, None, split, batch_size=5)
  trimmed = finetune_batches.predict_split(fake_step, None, split, batch_size=5, bucket=16)
  np.testing.assert_array_equal(full["probs"], ids * 2.0)
  np.testing.assert_array_equal(trimmed["probs"], ids * 2.0)
  np.testing.assert_array_equal(trimmed["row"], np.arange(23))
  assert seen_lengths == {16, 32, 40}  # buckets, capped at the full length
  assert finetune_batches.trimmed_length(mask[:1] * 0 + (np.arange(40) < 17), 16) == 32


def test_epoch_batches_grouped_by_length_cover_each_row_once():
  import numpy as np

  rng = np.random.default_rng(1)
  lengths = rng.integers(3, 120, size=203)
  batches = finetune_batches.epoch_batches(203, 10, rng, lengths, group=5)
  flat = np.concatenate(batches)
  assert len(batches) == 20 and len(set(flat.tolist())) == 200  # remainder of 3 dropped
  spread = np.mean([np.ptp(lengths[b]) for b in batches])
  plain = finetune_batches.epoch_batches(203, 10, rng)
  assert spread < 0.5 * np.mean([np.ptp(lengths[b]) for b in plain])


def test_lowercase_is_detected_from_checkpoint_or_vocab(data_dir, minilm_dir):
  from biobert_jax.trainers import model_dir as finetune_io

  config = finetune_config.get_config("ner")
  assert finetune_io.vocab_is_uncased(str(data_dir / "vocab" / "bert-base-uncased-vocab.txt"))
  assert not finetune_io.vocab_is_uncased(str(data_dir / "vocab" / "bert-base-cased-vocab.txt"))
  assert finetune_io.vocab_is_uncased(str(minilm_dir / "vocab.txt"))  # despite 'ℝ'
  config.update(init_checkpoint=str(minilm_dir), vocab_path="")
  vocab = finetune_io.resolve_vocab(config)
  assert vocab == str(minilm_dir / "vocab.txt")
  assert finetune_io.resolve_lowercase(config, vocab) is True  # tokenizer_config.json
  config.update(lowercase=0)
  assert finetune_io.resolve_lowercase(config, vocab) is False
