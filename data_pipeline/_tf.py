"""The one place data_pipeline imports TensorFlow.

TF is only our input pipeline; JAX owns the accelerators. Hiding GPUs from TF here keeps it
from reserving device memory that JAX needs.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

try:
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TF already initialised its devices: nothing to do any more.
  pass

__all__ = ["tf"]
