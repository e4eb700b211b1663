"""The wiring tier: trainers that connect the TF-free core to the tf.data input pipeline.

`pretrain` (continued/from-scratch MLM+NSP pre-training), `finetune` (NER/RE/QA),
`model_dir` (the fine-tuned model directory format), `predict` (raw text in, records out).
This package and `biobert_jax.tasks` are the only parts of `biobert_jax` that import
`data_pipeline`; the core (models, train, checkpoints, metrics, sharding) imports no
TensorFlow.
"""
