"""biobert-jax: BioBERT in JAX/Flax."""
from biobert_jax import fs  # noqa: F401  (sets the storage clients up before any path is used)
from biobert_jax.config import BertConfig

__all__ = ["BertConfig"]
