"""`--config=experiments/configs/finetune.py:<ner|re|qa|multi_ner>`: the library's
fine-tuning presets (biobert_jax/configs/finetune.py)."""
from biobert_jax.configs.finetune import get_config

__all__ = ["get_config"]
