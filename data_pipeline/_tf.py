"""The one place data_pipeline imports TensorFlow, with GPUs hidden from it so JAX keeps the
device memory.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

try:
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TF already initialised its devices: nothing to do any more.
  pass

__all__ = ["tf"]
