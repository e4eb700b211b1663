"""biobert-jax: BioBERT in JAX/Flax."""
from biobert_jax.config import BertConfig

__all__ = ["BertConfig"]
