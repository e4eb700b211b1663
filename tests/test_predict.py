"""Raw-text NER prediction: words, character offsets, windows, scores, the CLI helper."""
import json

import jax
import numpy as np
import pytest
from transformers.models.bert.tokenization_bert import BasicTokenizer

from biobert_jax.checkpoints.native import save_native
from biobert_jax.config import BertConfig
from biobert_jax.models import BertForTokenClassification, init_params
from data_pipeline.tokenization import read_vocab
from biobert_jax.trainers import predict

LABELS = ["O", "B-Disease", "I-Disease"]
TEXTS = [
    "Naïve BRCA1-associated  breast\tcancer (BC).",
    "",
    # Long enough for several windows of max_seq_length 16.
    " ".join(["Adenomatous polyposis coli (APC) is a hereditary colorectal cancer syndrome."] * 4),
]


def _model_dir(tmp_path, minilm_dir, favoured_label: int):
  """A model that predicts `favoured_label` everywhere: zero classifier kernel, biased bias."""
  vocab = read_vocab(minilm_dir / "vocab.txt")
  config = BertConfig.preset("tiny", vocab_size=len(vocab), hidden_size=32,
                             num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=32)
  params = init_params(BertForTokenClassification(config, num_labels=3), jax.random.key(0))
  params["classifier"]["kernel"] = np.zeros_like(params["classifier"]["kernel"])
  bias = np.zeros((3,), np.float32)
  bias[favoured_label] = 3.0
  params["classifier"]["bias"] = bias
  out = tmp_path / f"work{favoured_label}" / "model"
  save_native(config, params, out)
  (out / "vocab.txt").write_text((minilm_dir / "vocab.txt").read_text())
  (out / "task.json").write_text(json.dumps({
      "task": "ner", "labels": LABELS, "max_seq_length": 16, "doc_stride": 8,
      "lowercase": True, "extra_tokens": []}))
  return out.parent


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, minilm_dir):
  return _model_dir(tmp_path_factory.mktemp("ner"), minilm_dir, 1)


@pytest.fixture(scope="module")
def predictor(workdir):
  return predict.NerPredictor(workdir, batch_size=4)


def test_every_word_an_entity_matches_bert_basic_tokenizer(predictor):
  results = predict.tag_texts(predictor, TEXTS)
  assert results[1] == []
  expected_score = np.exp(3.0) / (np.exp(3.0) + 2)
  basic = BasicTokenizer(do_lower_case=True)
  for text, entities in zip(TEXTS, results):
    # Every word is B-Disease, so the entities are exactly BERT's basic-tokenizer words ...
    assert [basic.tokenize(e["text"])[0] for e in entities] == basic.tokenize(text)
    for e in entities:
      assert text[e["start"]:e["end"]] == e["text"]  # ... with offsets into the original
      assert e["type"] == "Disease"
      assert e["score"] == pytest.approx(expected_score, rel=1e-4)
  first = [e["text"] for e in results[0]]
  assert first == ["Naïve", "BRCA1", "-", "associated", "breast", "cancer", "(", "BC", ")",
                   "."]


def test_all_inside_tags_make_one_entity_across_windows(predictor):
  bias = np.array([0.0, 0.0, 3.0], np.float32)  # now every word is I-Disease
  predictor.params = {**predictor.params, "classifier": {**predictor.params["classifier"],
                                                         "bias": bias}}
  results = predictor.tag(TEXTS)
  long_text = TEXTS[2]
  assert len(predictor.tokenizer.encode([long_text])[0]) > 3 * 14  # several windows
  # conlleval: an I- after nothing starts an entity, the following I- continue it.
  assert [(e["start"], e["end"]) for e in results[2]] == [(0, len(long_text))]
  assert results[0][0]["text"] == TEXTS[0].strip()


def test_predict_file_text_and_jsonl(tmp_path, workdir):
  txt = tmp_path / "in.txt"
  txt.write_text("Breast cancer.\nNo\n")
  n = predict.predict_file("ner", str(workdir), str(txt), str(tmp_path / "out.jsonl"))
  records = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
  assert n == 2 and [r["text"] for r in records] == ["Breast cancer.", "No"]
  assert [e["text"] for e in records[0]["entities"]] == ["Breast", "cancer", "."]
  jsonl = tmp_path / "in.jsonl"
  jsonl.write_text(json.dumps({"id": 7, "text": "APC"}) + "\n")
  predict.predict_file("ner", str(workdir / "model"), str(jsonl), str(tmp_path / "o.jsonl"))
  record = json.loads((tmp_path / "o.jsonl").read_text())
  assert record["id"] == 7 and record["entities"][0]["end"] == 3
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"id": 1}\n')
  with pytest.raises(ValueError, match=r"bad.jsonl:1: expected a JSON object"):
    predict.read_records(str(bad))
