"""HF checkpoints: parity with transformers (real MiniLM weights and BERT-base-shaped random
weights with pre-training heads), export round trips, and the error messages for bad inputs.
"""
import functools
import json
import shutil

import jax
import numpy as np
import pytest
import torch
import transformers

from biobert_jax import BertConfig, checkpoints, models
from biobert_jax.checkpoints import CheckpointError

SENTENCES = [
    "BRCA1 and BRCA2 mutations increase the lifetime risk of breast and ovarian cancer.",
    "Aspirin irreversibly inhibits cyclooxygenase-1 in platelets.",
    "Patients received 75 mg/m2 cisplatin on day 1 of each 21-day cycle.",
    "The p53 tumour suppressor is mutated in about half of human cancers.",
    "Metformin lowers hepatic glucose production in type 2 diabetes.",
    "Imatinib targets the BCR-ABL fusion kinase in chronic myeloid leukaemia.",
    "Loss-of-function variants in CFTR cause cystic fibrosis.",
    "Serum ferritin was elevated (>1000 ng/mL) in 12 of 40 patients.",
    "Statins reduce LDL cholesterol by inhibiting HMG-CoA reductase.",
]


@functools.partial(jax.jit, static_argnums=0)
def _apply(module, params, *args):
  return module.apply({"params": params}, *args)


def _torch_inputs(batch):
  return {k: torch.tensor(np.asarray(v)) for k, v in batch.items()}


def test_minilm_matches_transformers(minilm_dir):
  config, params, report = checkpoints.load_with_report(minilm_dir)
  assert sorted(params) == ["encoder"] and report.format == "hf"
  assert report.ignored == ["embeddings.position_ids"] and not report.new and not report.unused
  tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
  batch = tok(SENTENCES, padding=True, return_tensors="np")
  assert batch["attention_mask"].min() == 0  # the batch really has padding
  seq, pooled = _apply(models.BertEncoder(config), params["encoder"], batch["input_ids"],
                       batch["token_type_ids"], batch["attention_mask"])
  ref = transformers.BertModel.from_pretrained(str(minilm_dir)).eval()
  with torch.no_grad():
    out = ref(**_torch_inputs(batch))
  real = batch["attention_mask"].astype(bool)
  diff = np.abs(np.asarray(seq) - out.last_hidden_state.numpy())
  assert diff[real].max() <= 1e-4, diff[real].max()
  assert np.abs(np.asarray(pooled) - out.pooler_output.numpy()).max() <= 1e-4
  # bf16 compute with the same f32 params on real weights and text. Measured (CPU, XLA):
  # max abs diff 0.034 on hidden states of mean |h| 0.32, mean diff 0.003; mean-pooled
  # sentence embeddings keep cosine > 0.9999 with f32. Bounds: 3x headroom.
  seq16, _ = _apply(models.BertEncoder(config, dtype=jax.numpy.bfloat16), params["encoder"],
                    batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
  seq16 = np.asarray(seq16, np.float32)
  diff16 = np.abs(seq16 - np.asarray(seq))[real]
  assert diff16.max() < 0.1 and diff16.mean() < 0.01, (diff16.max(), diff16.mean())

  def mean_pool(s):
    e = (s * real[..., None]).sum(1) / real.sum(1, keepdims=True)
    return e / np.linalg.norm(e, axis=-1, keepdims=True)

  assert (mean_pool(seq16) * mean_pool(np.asarray(seq))).sum(-1).min() > 0.999


BASE_SHAPED = dict(vocab_size=28996, hidden_size=768, num_hidden_layers=2, num_attention_heads=12,
                   intermediate_size=3072, max_position_embeddings=512)


@pytest.fixture(scope="module")
def hf_pretraining_dir(tmp_path_factory):
  """Random BERT-base-shaped (2 layers) BertForPreTraining saved by transformers."""
  torch.manual_seed(0)
  model = transformers.BertForPreTraining(transformers.BertConfig(**BASE_SHAPED)).eval()
  with torch.no_grad():  # non-trivial biases / LayerNorm params so every tensor matters
    for name, p in model.named_parameters():
      if name.endswith("bias") or "LayerNorm" in name:
        p.add_(0.1 * torch.randn_like(p))
  d = tmp_path_factory.mktemp("hf_pretraining")
  model.save_pretrained(str(d))
  return d, model


def _pretraining_batch(vocab=28996, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(999 if vocab > 1000 else 3, vocab, (3, 24)).astype(np.int32)
  ids[:, 0], ids[:, 12] = 101, 102
  types = (np.arange(24)[None] > 12).astype(np.int32).repeat(3, 0)
  mask = np.ones_like(ids)
  mask[2, 18:] = 0
  positions = np.array([[1, 5, 9, 14], [2, 3, 20, 23], [4, 7, 13, 17]], np.int32)
  return ids, types, mask, positions


def _reference_logits(model, ids, types, mask, positions):
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                token_type_ids=torch.tensor(types, dtype=torch.long),
                attention_mask=torch.tensor(mask, dtype=torch.long))
  mlm = np.take_along_axis(out.prediction_logits.numpy(), positions[..., None], axis=1)
  return mlm, out.seq_relationship_logits.numpy()


def test_base_shaped_pretraining_heads_match_transformers(hf_pretraining_dir):
  d, model = hf_pretraining_dir
  config, params = checkpoints.load(d)
  assert config == BertConfig(**BASE_SHAPED)
  assert sorted(params) == ["cls", "encoder"]
  ids, types, mask, positions = _pretraining_batch()
  mlm, nsp = _apply(models.BertForPreTraining(config), params, ids, types, mask, positions)
  ref_mlm, ref_nsp = _reference_logits(model, ids, types, mask, positions)
  assert mlm.shape == (3, 4, 28996)
  assert np.abs(np.asarray(mlm) - ref_mlm).max() <= 1e-4
  assert np.abs(np.asarray(nsp) - ref_nsp).max() <= 1e-4


def _tiny_config():
  return BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                    intermediate_size=96, max_position_embeddings=64)


def _random_params(module, seed):
  """Random params of `module`'s shapes (LayerNorm scales near 1, everything else ~N(0, 0.05))."""
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    base = 1.0 if jax.tree_util.keystr(path).endswith("['scale']") else 0.0
    return (base + 0.05 * rng.standard_normal(s.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(leaf, models.param_shapes(module))


def test_export_hf_round_trip_with_heads_through_transformers(tmp_path):
  config = _tiny_config()
  module = models.BertForPreTraining(config)
  params = _random_params(module, 0)
  # Export from the scanned form: exporters unstack.
  out = checkpoints.export_hf(config, checkpoints.stack_layers(params), tmp_path / "hf")
  assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
  ref = transformers.BertForPreTraining.from_pretrained(str(out)).eval()
  # transformers ties the decoder to the word embeddings we exported.
  np.testing.assert_array_equal(ref.cls.predictions.decoder.weight.detach().numpy(),
                                params["encoder"]["embeddings"]["word_embeddings"]["embedding"])
  ids, types, mask, positions = _pretraining_batch(vocab=120)
  ids[:, 0], ids[:, 12] = 1, 2
  mlm, nsp = _apply(module, params, ids, types, mask, positions)
  ref_mlm, ref_nsp = _reference_logits(ref, ids, types, mask, positions)
  assert np.abs(np.asarray(mlm) - ref_mlm).max() <= 1e-4
  assert np.abs(np.asarray(nsp) - ref_nsp).max() <= 1e-4
  # ... and our loader reads our export back bit-exactly.
  _, back = checkpoints.load(out)
  jax.tree.map(np.testing.assert_array_equal, back, params)


def test_export_hf_encoder_only_loads_as_bert_model(tmp_path):
  config = _tiny_config()
  params = {"encoder": _random_params(models.BertEncoder(config), 3)}
  out = checkpoints.export_hf(config, params, tmp_path / "enc")
  assert json.loads((out / "config.json").read_text())["architectures"] == ["BertModel"]
  ref = transformers.BertModel.from_pretrained(str(out)).eval()
  ids, types, mask, _ = _pretraining_batch(vocab=120)
  seq, pooled = _apply(models.BertEncoder(config), params["encoder"], ids, types, mask)
  with torch.no_grad():
    o = ref(input_ids=torch.tensor(ids, dtype=torch.long),
            token_type_ids=torch.tensor(types, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long))
  real = mask.astype(bool)
  assert np.abs(np.asarray(seq) - o.last_hidden_state.numpy())[real].max() <= 1e-4
  assert np.abs(np.asarray(pooled) - o.pooler_output.numpy()).max() <= 1e-4
  with pytest.raises(CheckpointError, match="extra \\['classifier'\\]"):
    checkpoints.export_hf(config, dict(params, classifier={"kernel": np.zeros((48, 2))}),
                          tmp_path / "x")


def test_pytorch_bin_with_bert_prefix_and_masked_lm_only(tmp_path):
  """pytorch_model.bin (torch.load weights_only), `bert.` prefix, no NSP head: non-strict load."""
  tc = transformers.BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=2,
                               num_attention_heads=3, intermediate_size=96,
                               max_position_embeddings=64)
  torch.manual_seed(1)
  model = transformers.BertForMaskedLM(tc).eval()
  model.save_pretrained(str(tmp_path), safe_serialization=False)
  assert (tmp_path / "pytorch_model.bin").exists()
  with pytest.raises(CheckpointError,
                     match="(?s)missing from the checkpoint.*cls/seq_relationship/kernel"):
    checkpoints.load(tmp_path)
  config, params, report = checkpoints.load_with_report(tmp_path, strict=False)
  # BertForMaskedLM has neither the pooler nor the NSP head: both freshly initialised.
  assert sorted(report.new) == ["cls/seq_relationship/bias", "cls/seq_relationship/kernel",
                                "encoder/pooler/dense/bias", "encoder/pooler/dense/kernel"]
  assert not report.unused
  ids, types, mask, positions = _pretraining_batch(vocab=120)
  mlm, _ = _apply(models.BertForPreTraining(config), params, ids, types, mask, positions)
  with torch.no_grad():
    ref = model(input_ids=torch.tensor(ids, dtype=torch.long),
                token_type_ids=torch.tensor(types, dtype=torch.long),
                attention_mask=torch.tensor(mask, dtype=torch.long)).logits.numpy()
  ref = np.take_along_axis(ref, positions[..., None], axis=1)
  assert np.abs(np.asarray(mlm) - ref).max() <= 1e-4


@pytest.fixture(scope="module")
def tiny_hf_export(tmp_path_factory):
  config = _tiny_config()
  return config, checkpoints.export_hf(
      config, {"encoder": models.init_params(models.BertEncoder(config), jax.random.key(0))},
      tmp_path_factory.mktemp("tiny") / "hf")


@pytest.fixture
def tiny_hf_dir(tiny_hf_export, tmp_path):
  """A fresh copy per test (tests corrupt it)."""
  config, d = tiny_hf_export
  return config, shutil.copytree(d, tmp_path / "tiny")


def test_truncated_safetensors_names_the_file(tiny_hf_dir):
  _, d = tiny_hf_dir
  f = d / "model.safetensors"
  f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
  with pytest.raises(CheckpointError, match="model.safetensors: cannot read safetensors"):
    checkpoints.load(d)


def test_wrong_vocab_size_in_config_is_explained(tiny_hf_dir):
  _, d = tiny_hf_dir
  cfg = json.loads((d / "config.json").read_text())
  cfg["vocab_size"] = 28996
  (d / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(CheckpointError) as e:
    checkpoints.load(d)
  msg = str(e.value)
  assert "encoder/embeddings/word_embeddings/embedding (hf name embeddings.word_embeddings.weight)"\
      ": checkpoint [120, 48] vs config [28996, 48]" in msg
  assert "vocab_size=28996" in msg and str(d) in msg


def test_missing_and_unexpected_tensors_are_listed(tiny_hf_dir, tmp_path):
  from safetensors.numpy import load_file, save_file

  _, d = tiny_hf_dir
  tensors = load_file(str(d / "model.safetensors"))
  del tensors["encoder.layer.1.attention.self.key.weight"]
  tensors["classifier.weight"] = np.zeros((2, 48), np.float32)
  save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
  with pytest.raises(CheckpointError) as e:
    checkpoints.load(d)
  msg = str(e.value)
  assert ("encoder/encoder/layer_1/attention/self/key/kernel (hf name "
          "encoder.layer.1.attention.self.key.weight): config [48, 3, 16]") in msg
  assert "unexpected in the checkpoint:\n  classifier.weight [2, 48]" in msg
  _, params, report = checkpoints.load_with_report(d, strict=False)
  assert report.new == ["encoder/encoder/layer_1/attention/self/key/kernel"]
  assert report.unused == ["classifier.weight"]
  assert params["encoder"]["encoder"]["layer_1"]["attention"]["self"]["key"]["kernel"].shape == (
      48, 3, 16)


def test_unrecognised_directory(tmp_path):
  (tmp_path / "notes.txt").write_text("nothing here")
  with pytest.raises(CheckpointError, match="not a recognised checkpoint"):
    checkpoints.load(tmp_path)


def test_native_dir_dispatches_to_native_module(tmp_path, tiny_hf_dir, monkeypatch):
  """A bert_config.json + params/ directory goes to checkpoints.native.load_native."""
  import sys
  import types

  config, _ = tiny_hf_dir
  (tmp_path / "params").mkdir()
  config.to_json_file(tmp_path / "bert_config.json")
  calls = []
  fake = types.ModuleType("biobert_jax.checkpoints.native")
  fake.load_native = lambda p: calls.append(p) or (config, {"encoder": {}})
  monkeypatch.setitem(sys.modules, "biobert_jax.checkpoints.native", fake)
  import biobert_jax.checkpoints as ck
  monkeypatch.setattr(ck, "native", fake, raising=False)
  assert checkpoints.detect_format(tmp_path) == "native"
  assert checkpoints.load(tmp_path) == (config, {"encoder": {}})
  assert [str(c) for c in calls] == [str(tmp_path)]
  shutil.rmtree(tmp_path / "params")
