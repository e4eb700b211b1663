"""The README section "Use a model trained here with transformers" runs as written.

A fine-tuned model directory is put at work/ncbi (a tiny model with the MiniLM vocabulary
and a head that tags every word as a disease), the section's shell block is run with
this interpreter and its Python block executed, in a fresh directory.
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from biobert_jax.config import BertConfig
from biobert_jax.models import BertForTokenClassification, init_params
from biobert_jax.trainers.model_dir import save_finetuned
from data_pipeline.tokenization import read_vocab

ROOT = pathlib.Path(__file__).resolve().parent.parent
TITLE = "## Use a model trained here with transformers"


def _blocks(kind):
  text = (ROOT / "README.md").read_text()
  section = text.split(TITLE, 1)[1].split("\n## ", 1)[0]
  return re.findall(rf"```{kind}\n(.*?)```", section, re.S)


@pytest.mark.slow
def test_readme_transformers_section_runs(tmp_path, minilm_dir):
  vocab = read_vocab(minilm_dir / "vocab.txt")
  config = BertConfig.preset("tiny", vocab_size=len(vocab), hidden_size=32,
                             num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=64)
  params = init_params(BertForTokenClassification(config, num_labels=3), jax.random.key(0))
  params["classifier"]["kernel"] = np.zeros_like(params["classifier"]["kernel"])
  params["classifier"]["bias"] = np.array([0.0, 3.0, 0.0], np.float32)
  save_finetuned(str(tmp_path / "work" / "ncbi" / "model"), config, params,
                 str(minilm_dir / "vocab.txt"),
                 {"task": "ner", "labels": ["O", "B-Disease", "I-Disease"],
                  "max_seq_length": 64, "doc_stride": 32, "lowercase": True,
                  "extra_tokens": []})
  (shell,), (code,) = _blocks("bash"), _blocks("python")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  env.pop("USE_TF", None)  # as a user's shell runs it: transformers sees TensorFlow
  command = shell.strip().replace("python ", f"{sys.executable} ", 1)
  subprocess.run(command, shell=True, check=True, cwd=tmp_path, env=env)
  assert json.loads((tmp_path / "work" / "ncbi_hf" / "config.json").read_text())[
      "architectures"] == ["BertForTokenClassification"]
  out = subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env,
                       capture_output=True, text=True).stdout.splitlines()
  # Every word is B-Disease: one entity per word, with character offsets.
  assert out[0] == "Disease 0 5 brca1"
  assert len(out) == len("BRCA1 mutations cause hereditary breast and ovarian cancer .".split())
