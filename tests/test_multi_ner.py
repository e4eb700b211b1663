"""Multi-task NER: one encoder, a head per corpus, each scored on its own corpus."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biobert_jax.checkpoints.native import load_native, save_native
from biobert_jax.config import BertConfig
from biobert_jax.models import BertForPreTraining, init_params
from biobert_jax.tasks import get_task
from biobert_jax.tasks.multi_ner import head_name, split_labels
from biobert_jax.trainers import annotate
from biobert_jax.trainers import finetune as finetune_lib
from data_pipeline.tasks import ner as ner_data
from experiments.configs import finetune as finetune_config

# End-to-end fine-tuning runs: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

CORPORA = ("NCBI-disease", "BC5CDR-chem")
NUM_TRAIN, NUM_EVAL = 48, 16
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocab(sentences) -> list[str]:
  words = sorted({w.lower() for s in sentences for w in s.words})
  chars = sorted({c for w in words for c in w})
  return SPECIALS + chars + [f"##{c}" for c in chars] + [w for w in words if len(w) > 1]


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  sentences = []
  for corpus in CORPORA:
    for split in ("train.tsv", "devel.tsv", "test.tsv"):
      sentences += ner_data.read_conll(data_dir / "ner" / corpus / split,
                                       max_sentences=NUM_TRAIN)[0]
  ckpt = tmp_path_factory.mktemp("ckpt")
  vocab = _vocab(sentences)
  (ckpt / "vocab.txt").write_text("\n".join(vocab) + "\n")
  bert = BertConfig.preset("tiny", vocab_size=len(vocab), hidden_size=64,
                           num_attention_heads=2, intermediate_size=128,
                           max_position_embeddings=64)
  save_native(bert, init_params(BertForPreTraining(bert), jax.random.key(0)), ckpt)
  config = finetune_config.get_config("multi_ner")
  assert tuple(config.ner.corpora) == CORPORA
  config.update(data_dir=str(data_dir / "ner"), init_checkpoint=str(ckpt), lowercase=-1,
                max_train_examples=NUM_TRAIN, max_eval_examples=NUM_EVAL, num_epochs=3,
                batch_size=16, eval_batch_size=8, max_seq_length=32, doc_stride=16,
                log_every=1, reinit=("^encoder/pooler/",))
  config.optim.update(learning_rate=2e-3, warmup_proportion=0.0)
  workdir = tmp_path_factory.mktemp("work")
  results = finetune_lib.run(config, str(workdir),
                             compiler_options={"xla_backend_optimization_level": 0})
  return workdir, results, config


def test_each_head_scored_on_its_corpus(trained):
  workdir, results, _ = trained
  heads = [head_name(c) for c in CORPORA]
  for split in ("dev", "test"):
    result = results[split]
    assert sorted(result["per_corpus"]) == sorted(heads)
    f1s = [result["per_corpus"][h]["f1"] for h in heads]
    assert result["f1"] == pytest.approx(np.mean(f1s))
    assert result["per_corpus"]["NCBI_disease"]["num_gold"] > 0
    for h in heads:
      assert result[f"f1_{h}"] == result["per_corpus"][h]["f1"]
      gold_types = set(result["per_corpus"][h]["per_type"])
      assert gold_types == ({"Disease"} if h == "NCBI_disease" else {"Chemical"})
    for h in heads:
      assert (workdir / f"predictions_{split}_{h}.conll").exists()
  info = json.loads((workdir / "model" / "task.json").read_text())
  assert info["task"] == "multi_ner"
  assert [(h["name"], h["corpus"], h["labels"]) for h in info["heads"]] == [
      ("BC5CDR_chem", "BC5CDR-chem", ["O", "B-Chemical", "I-Chemical"]),
      ("NCBI_disease", "NCBI-disease", ["O", "B-Disease", "I-Disease"])]


def test_both_heads_trained(trained):
  workdir, results, config = trained
  _, params = load_native(str(workdir / "model"))
  task = get_task("multi_ner")
  labels = [f"{h['name']}/{t}" for h in json.loads(
      (workdir / "model" / "task.json").read_text())["heads"] for t in h["labels"]]
  bert, _ = load_native(str(workdir / "model"))
  module = task.make_model(bert, config, labels, jnp.float32)
  fresh = init_params(module, jax.random.key(int(config.seed)), seq_len=16)
  for head in ("NCBI_disease", "BC5CDR_chem"):
    moved = np.abs(np.asarray(params[head]["kernel"]) - np.asarray(fresh[head]["kernel"]))
    assert moved.max() > 1e-3, head
  losses = [h["train_loss"] for h in results["history"]]
  assert losses[-1] < losses[0]


def test_loss_uses_each_examples_own_head():
  task = get_task("multi_ner")
  labels = jnp.asarray([[1, -100], [0, 2]], jnp.int32)
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.normal(size=(2, 2, 3)), jnp.float32)
  b = jnp.asarray(rng.normal(size=(2, 2, 3)), jnp.float32)
  batch = {"labels": labels, "corpus_id": jnp.asarray([0, 0], jnp.int32)}
  # corpus 0 is head "A" (sorted order); head "B"'s logits must not matter.
  loss1, _ = task.loss({"A": a, "B": b}, batch)
  loss2, _ = task.loss({"A": a, "B": b * 5 + 1}, batch)
  assert float(loss1) == pytest.approx(float(loss2))
  single = get_task("ner").loss(a, {"labels": labels})[0]
  assert float(loss1) == pytest.approx(float(single), rel=1e-6)
  mixed = {"labels": labels, "corpus_id": jnp.asarray([0, 1], jnp.int32)}
  loss3, _ = task.loss({"A": a, "B": b}, mixed)
  assert float(loss3) != pytest.approx(float(loss1))
  assert split_labels(["B/O", "A/O", "A/B-X"]) == {"A": ["O", "B-X"], "B": ["O"]}


def test_annotate_runs_every_head_in_one_pass(trained, data_dir, tmp_path):
  workdir, _, _ = trained
  sample = data_dir / "pretrain" / "xml_sample" / "pubmed26n1334_sample.xml.gz"
  tagger = annotate.Tagger(str(workdir), annotate.sharding.make_mesh(
      {"data": -1, "fsdp": 1, "tensor": 1}))
  assert [h.name for h in tagger.heads] == ["BC5CDR_chem", "NCBI_disease"]
  summary = annotate.annotate([str(workdir)], str(sample), str(tmp_path), batch_size=16,
                              log_every_s=1e9)
  assert summary["documents"] == 30
  assert set(summary["entities"]) <= {"Chemical", "Disease"}
  records = [json.loads(line) for line in
             (tmp_path / "pubmed26n1334_sample.jsonl").read_text().splitlines()]
  assert all(r["text"][e["start"]:e["end"]] == e["text"] for r in records
             for e in r["entities"])
