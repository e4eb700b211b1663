"""Task readers and featurisers (numpy in, numpy out; no JAX): `ner`, `tfds_ner`, `re`,
`chemprot`, `qa`. Import submodules explicitly.
"""
