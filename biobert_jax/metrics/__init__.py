"""Evaluation metrics, pure Python/numpy (no TF, no seqeval/sklearn at runtime).

* `ner`: entity-level precision/recall/F1 with conlleval semantics + token accuracy.
* `re`: relation-extraction scores (binary GAD, micro ChemProt).
* `bioasq`: BioASQ factoid scores (strict/lenient accuracy, MRR).

Submodules are imported explicitly (`from biobert_jax.metrics import ner`).
"""
