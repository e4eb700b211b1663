"""experiments/convert_checkpoint.py: a chain of conversions keeps every tensor bit-exact."""
import jax
import numpy as np

from biobert_jax import BertConfig, checkpoints, models
from biobert_jax.checkpoints import convert_checkpoint


def test_hf_to_native_to_tf1_to_hf_is_lossless(tmp_path):
  config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=32)
  params = models.init_params(models.BertForPreTraining(config), jax.random.key(0))
  src = checkpoints.export_hf(config, params, tmp_path / "src")
  native = convert_checkpoint(str(src), str(tmp_path / "native"), "native")
  tf1 = convert_checkpoint(str(native), str(tmp_path / "tf1"), "tf1")
  assert checkpoints.detect_format(tmp_path / "tf1") == "tf1" and tf1.name == "model.ckpt"
  hf = convert_checkpoint(str(tmp_path / "tf1"), str(tmp_path / "hf"), "hf")
  config2, params2 = checkpoints.load(hf)
  assert config2 == config and sorted(params2) == ["cls", "encoder"]
  jax.tree.map(np.testing.assert_array_equal, params2, params)
