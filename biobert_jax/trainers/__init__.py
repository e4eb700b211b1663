"""The wiring tier: trainers that connect the TF-free core to the tf.data input pipeline."""
