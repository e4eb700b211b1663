"""tensorflow-datasets builders for the biomedical NER corpora (local files via manual_dir):
`tfds.load("biobert_ner/ncbi_disease", ...)` after importing this module.
"""
from __future__ import annotations

import dataclasses
import pathlib

import tensorflow_datasets as tfds
from etils import epath

from data_pipeline._tf import tf  # noqa: F401  (TF set up our way before tfds uses it)
from data_pipeline.tasks import ner

_SPLITS = {"train": "train.tsv", "validation": "devel.tsv", "test": "test.tsv"}


@dataclasses.dataclass
class NerCorpusConfig(tfds.core.BuilderConfig):
  folder: str = ""           # folder under manual_dir
  entity_types: tuple = ()   # the corpus' entity types, fixed so labels are stable


class BiobertNer(tfds.core.GeneratorBasedBuilder):
  """The BioBERT NER benchmark corpora (cambridgeltl MTL-Bioinformatics-2016 IOB2 files)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at the folder holding NCBI-disease/, BC5CDR-chem/ and "
      "BC5CDR-disease/ (each with train.tsv, devel.tsv, test.tsv), e.g. ../shared/data/ner.")
  BUILDER_CONFIGS = [
      NerCorpusConfig(name="ncbi_disease", description="NCBI disease corpus",
                      folder="NCBI-disease", entity_types=("Disease",)),
      NerCorpusConfig(name="bc5cdr_chem", description="BC5CDR chemical mentions",
                      folder="BC5CDR-chem", entity_types=("Chemical",)),
      NerCorpusConfig(name="bc5cdr_disease", description="BC5CDR disease mentions",
                      folder="BC5CDR-disease", entity_types=("Disease",)),
  ]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # tfds' default probes importlib_resources (not installed with tfds 4.9.10 here) to
    # locate this file; we know where it is.
    return epath.Path(pathlib.Path(__file__).resolve())

  def _labels(self) -> list[str]:
    return ["O"] + [f"{p}-{t}" for t in self.builder_config.entity_types for p in ("B", "I")]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "tokens": tfds.features.Sequence(tfds.features.Text()),
            "tags": tfds.features.Sequence(tfds.features.ClassLabel(names=self._labels())),
        }),
        supervised_keys=("tokens", "tags"),
        homepage="https://github.com/cambridgeltl/MTL-Bioinformatics-2016",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    folder = dl_manager.manual_dir / self.builder_config.folder
    return {split: self._generate_examples(folder / filename)
            for split, filename in _SPLITS.items()}

  def _generate_examples(self, path):
    sentences, _ = ner.read_conll(path, invalid_i="fail", labels=self._labels())
    for i, sentence in enumerate(sentences):
      yield i, {"tokens": sentence.words, "tags": sentence.tags}
