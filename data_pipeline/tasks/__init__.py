"""Task readers and featurisers (numpy in, numpy out; no JAX).

* `ner`: token-per-line IOB/IOB2/IOBES readers, word->piece alignment, windows.
* `tfds_ner`: tensorflow-datasets builders for the NER corpora (imports TF/tfds).
* `re`, `chemprot`, `qa`: relation extraction and question answering inputs.

Submodules are imported explicitly, so importing one does not pull in the others.
"""
