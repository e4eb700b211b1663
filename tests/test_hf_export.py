"""Fine-tuned models exported as transformers task directories, checked against transformers.

NER: MiniLM-L6 (real weights) + a random 3-label head, exported, run through
`pipeline("token-classification", aggregation_strategy="first")` on real PubMed abstracts
and compared with our `tag_texts` (type, start, end). RE / QA: logits of the exported
directory in transformers vs our model, within 1e-4. Round trip ours -> HF -> ours.
"""
import json
import os

os.environ.setdefault("USE_TF", "0")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from biobert_jax import checkpoints, models  # noqa: E402
from biobert_jax.config import BertConfig  # noqa: E402
from biobert_jax.trainers import predict  # noqa: E402
from biobert_jax.trainers import hf_export  # noqa: E402
from biobert_jax.trainers import model_dir as model_dir_lib  # noqa: E402
from biobert_jax.trainers.model_dir import save_finetuned  # noqa: E402
from data_pipeline.tokenization import load_tokenizer, read_vocab  # noqa: E402

LABELS = ["O", "B-Disease", "I-Disease"]
NUM_ABSTRACTS = 12  # ~250-400 pieces each: 2-4 windows of 128


@pytest.fixture(scope="module")
def ner_dirs(tmp_path_factory, minilm_dir):
  """(our workdir, exported HF dir): MiniLM + a random head that tags ~1 word in 8."""
  config, params = checkpoints.load(str(minilm_dir))
  rng = np.random.default_rng(0)
  params = {"encoder": params["encoder"], "classifier": {
      "kernel": rng.normal(0, 0.05, (config.hidden_size, 3)).astype(np.float32),
      "bias": np.array([0.5, 0.0, 0.0], np.float32)}}
  work = tmp_path_factory.mktemp("ner")
  save_finetuned(str(work / "model"), config, params, str(minilm_dir / "vocab.txt"),
                 {"task": "ner", "labels": LABELS, "max_seq_length": 128, "doc_stride": 64,
                  "lowercase": True, "extra_tokens": []})
  out = work / "hf"
  assert hf_export.export_model_dir(work, out) == [out]
  return work, out


@pytest.fixture(scope="module")
def abstracts(data_dir):
  lines = (data_dir / "pretrain" / "pubmed_abstracts.txt").read_text().splitlines()
  return lines[:NUM_ABSTRACTS]


def _spans(entities, key="type"):
  return [(e[key], e["start"], e["end"]) for e in entities]


def test_export_directory_is_a_complete_transformers_task_model(ner_dirs):
  _, out = ner_dirs
  names = set(os.listdir(out))
  assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
          "special_tokens_map.json", "README.md"} <= names
  config = json.loads((out / "config.json").read_text())
  assert config["architectures"] == ["BertForTokenClassification"]
  assert config["id2label"] == {"0": "O", "1": "B-Disease", "2": "I-Disease"}
  tok = transformers.AutoTokenizer.from_pretrained(out)
  assert tok.do_lower_case if hasattr(tok, "do_lower_case") else True
  assert tok.model_max_length == 128
  card = (out / "README.md").read_text()
  assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: token-classification")
  # No warning-worthy surprises: every tensor is used, none missing.
  _, info = transformers.AutoModelForTokenClassification.from_pretrained(
      out, output_loading_info=True)
  assert not any(info.values()), info


def test_pipeline_matches_predict_on_whole_abstracts_in_one_window(ner_dirs, abstracts):
  """One 512-piece window both ways: identical entities, no exception."""
  work, out = ner_dirs
  predictor = predict.NerPredictor(work, batch_size=4)
  predictor.max_seq_length = 512
  tok = transformers.AutoTokenizer.from_pretrained(out, model_max_length=512)
  pipe = transformers.pipeline("token-classification", model=str(out), tokenizer=tok,
                               aggregation_strategy="first", framework="pt")
  ours = predictor.tag(abstracts)
  total = 0
  for text, mine in zip(abstracts, ours):
    assert len(tok(text)["input_ids"]) <= 512
    theirs = pipe(text)
    assert _spans(mine) == _spans(theirs, "entity_group"), text[:60]
    total += len(mine)
  assert total > 10 * len(abstracts)  # the comparison has entities to compare


def _overlap_zones(tok, text, max_length, overlap):
  """Character ranges seen by two consecutive windows of the pipeline."""
  enc = tok(text, truncation=True, max_length=max_length, stride=overlap,
            return_overflowing_tokens=True, return_offsets_mapping=True)
  windows = []
  for offsets in enc["offset_mapping"]:
    real = [o for o in offsets if o[1] > o[0]]
    windows.append((real[0][0], real[-1][1]))
  return [(windows[k + 1][0], windows[k][1]) for k in range(len(windows) - 1)]


@pytest.mark.slow
def test_pipeline_vs_predict_with_windows_differs_only_where_windows_overlap(ner_dirs,
                                                                             abstracts):
  """128-piece windows both ways, the pipeline's overlap set so its windows are ours
  (stride = 126 - doc_stride pieces). A word outside an overlap is seen by one window
  only, the same one both ways; inside, we take the window where the word has the most
  context, the pipeline keeps the longest of the overlapping entities. So every
  difference touches an overlap zone."""
  work, out = ner_dirs
  tok = transformers.AutoTokenizer.from_pretrained(out)
  pipe = transformers.pipeline("token-classification", model=str(out),
                               aggregation_strategy="first", framework="pt")
  ours = predict.tag_texts(work, abstracts)
  same = differ = 0
  for text, mine in zip(abstracts, ours):
    theirs = _spans(pipe(text, stride=126 - 64), "entity_group")
    mine = _spans(mine)
    zones = _overlap_zones(tok, text, 128, 126 - 64)
    for entity in set(mine) ^ set(theirs):
      _, start, end = entity
      assert any(start < z1 and end > z0 for z0, z1 in zones), (entity, zones)
      differ += 1
    same += len(set(mine) & set(theirs))
  print(f"windowed: {same} entities the same, {differ} differ (all in overlaps)")
  assert same > 4 * differ  # differences are the exception


def test_round_trip_ours_hf_ours_gives_identical_predictions(ner_dirs, abstracts):
  work, out = ner_dirs
  loaded = model_dir_lib.load_finetuned(out)
  assert loaded.info["task"] == "ner" and loaded.info["labels"] == LABELS
  assert loaded.info["lowercase"] is True and loaded.info["max_seq_length"] == 128
  assert predict.tag_texts(out, abstracts[:4]) == predict.tag_texts(work, abstracts[:4])


# ---- RE and QA: logits --------------------------------------------------------------------
def _tiny_config(vocab_size):
  return BertConfig.preset("tiny", vocab_size=vocab_size, hidden_size=32,
                           num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=128)


def _hf_inputs(tok, *texts):
  enc = tok(*texts, return_tensors="pt", padding=True)
  return enc, {k: enc[k].numpy().astype(np.int32) for k in
               ("input_ids", "token_type_ids", "attention_mask")}


def test_re_export_with_marker_tokens_logits_match(tmp_path, minilm_dir, data_dir):
  markers = ["@GENE$", "@DISEASE$"]
  vocab = read_vocab(minilm_dir / "vocab.txt")
  config = _tiny_config(len(vocab) + len(markers))
  module = models.BertForSequenceClassification(config, num_labels=2, pooling="cls")
  params = models.init_params(module, jax.random.key(1))
  labels = ["0", "1"]
  save_finetuned(str(tmp_path / "model"), config, params, str(minilm_dir / "vocab.txt"),
                 {"task": "re", "labels": labels, "pooling": "cls", "markers": markers,
                  "marker_mode": "new_tokens", "max_seq_length": 128, "doc_stride": 64,
                  "lowercase": True, "extra_tokens": markers})
  hf_export.export_model_dir(tmp_path / "model", tmp_path / "hf")
  sentences = [l.split("\t")[0] for l in
               (data_dir / "re" / "gad" / "train.tsv").read_text().splitlines()[:6]]
  tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
  ours_tok = load_tokenizer(minilm_dir / "vocab.txt", lowercase=True, extra_tokens=markers)
  enc, batch = _hf_inputs(tok, sentences)
  for row, ids in enumerate(ours_tok.encode(sentences)):  # the markers are one id each
    n = int(batch["attention_mask"][row].sum())
    assert batch["input_ids"][row, 1:n - 1].tolist() == ids
    assert len(vocab) in ids and len(vocab) + 1 in ids
  model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf")
  with torch.no_grad():
    theirs = model(**enc).logits.numpy()
  mine = module.apply({"params": params}, **batch)
  np.testing.assert_allclose(np.asarray(mine), theirs, atol=1e-4)
  assert model.config.id2label == {0: "0", 1: "1"}
  loaded = model_dir_lib.load_finetuned(tmp_path / "hf")  # round trip: same params
  assert loaded.info["extra_tokens"] == markers
  for path, leaf in checkpoints.flatten(params).items():
    np.testing.assert_array_equal(checkpoints.flatten(loaded.params)[path], leaf)


def test_re_entity_start_pooling_refuses_export(tmp_path, minilm_dir):
  vocab = read_vocab(minilm_dir / "vocab.txt")
  config = _tiny_config(len(vocab))
  module = models.BertForSequenceClassification(config, num_labels=2, pooling="entity_start")
  params = models.init_params(module, jax.random.key(1))
  save_finetuned(str(tmp_path / "model"), config, params, str(minilm_dir / "vocab.txt"),
                 {"task": "re", "labels": ["0", "1"], "pooling": "entity_start",
                  "max_seq_length": 64, "lowercase": True, "extra_tokens": []})
  with pytest.raises(ValueError, match="entity_start.*no transformers class"):
    hf_export.export_model_dir(tmp_path / "model", tmp_path / "hf")


def test_qa_export_logits_match(tmp_path, minilm_dir):
  vocab = read_vocab(minilm_dir / "vocab.txt")
  config = _tiny_config(len(vocab))
  module = models.BertForQuestionAnswering(config)
  params = models.init_params(module, jax.random.key(2))
  save_finetuned(str(tmp_path / "model"), config, params, str(minilm_dir / "vocab.txt"),
                 {"task": "qa", "max_seq_length": 128, "doc_stride": 64, "lowercase": True,
                  "extra_tokens": []})
  hf_export.export_model_dir(tmp_path / "model", tmp_path / "hf")
  assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == [
      "BertForQuestionAnswering"]
  tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
  enc, batch = _hf_inputs(tok, ["Which gene causes cystic fibrosis?"],
                          ["Cystic fibrosis is caused by mutations in the CFTR gene."])
  model = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path / "hf")
  with torch.no_grad():
    theirs = model(**enc)
  start, end = module.apply({"params": params}, **batch)
  np.testing.assert_allclose(np.asarray(start), theirs.start_logits.numpy(), atol=1e-4)
  np.testing.assert_allclose(np.asarray(end), theirs.end_logits.numpy(), atol=1e-4)
  loaded = model_dir_lib.load_finetuned(tmp_path / "hf")
  assert loaded.info["task"] == "qa"
  np.testing.assert_array_equal(loaded.params["qa_outputs"]["kernel"],
                                params["qa_outputs"]["kernel"])


def test_multi_ner_exports_one_directory_per_head(tmp_path, minilm_dir):
  vocab = read_vocab(minilm_dir / "vocab.txt")
  config = _tiny_config(len(vocab))
  heads = (("BC5CDR_chem", 3), ("NCBI_disease", 3))
  module = models.BertForMultiTokenClassification(config, heads=heads)
  params = models.init_params(module, jax.random.key(3))
  info = {"task": "multi_ner", "max_seq_length": 64, "doc_stride": 32, "lowercase": True,
          "extra_tokens": [], "heads": [
              {"name": "BC5CDR_chem", "corpus": "BC5CDR-chem",
               "labels": ["O", "B-Chemical", "I-Chemical"]},
              {"name": "NCBI_disease", "corpus": "NCBI-disease", "labels": LABELS}]}
  save_finetuned(str(tmp_path / "model"), config, params, str(minilm_dir / "vocab.txt"), info)
  written = hf_export.export_model_dir(tmp_path / "model", tmp_path / "hf")
  assert [p.name for p in written] == ["BC5CDR_chem", "NCBI_disease"]
  index = json.loads((tmp_path / "hf" / "heads.json").read_text())
  assert [h["path"] for h in index["heads"]] == ["BC5CDR_chem", "NCBI_disease"]
  assert (tmp_path / "hf" / "README.md").exists()
  tok = transformers.AutoTokenizer.from_pretrained(written[1])
  enc, batch = _hf_inputs(tok, ["Familial breast cancer and tamoxifen."])
  out = module.apply({"params": params}, **batch)
  for sub in written:
    model = transformers.AutoModelForTokenClassification.from_pretrained(sub)
    with torch.no_grad():
      theirs = model(**enc).logits.numpy()
    np.testing.assert_allclose(np.asarray(out[sub.name]), theirs, atol=1e-4)
