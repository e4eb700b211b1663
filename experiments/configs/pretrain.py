"""`--config=experiments/configs/pretrain.py:<tiny|mini|small|medium|base|large>`: the
library's pre-training presets (biobert_jax/configs/pretrain.py)."""
from biobert_jax.configs.pretrain import get_config

__all__ = ["get_config"]
