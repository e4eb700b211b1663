"""Evaluation metrics in pure Python/numpy: `ner` (conlleval), `re` (GAD binary, ChemProt
micro), `bioasq` (factoid strict/lenient/MRR). Import submodules explicitly.
"""
