"""The tensorflow-datasets builder for the NER corpora builds from the shared files."""
import tensorflow_datasets as tfds

from data_pipeline.tasks import ner, tfds_ner


def test_ncbi_builds_with_readme_counts(data_dir, tmp_path):
  builder = tfds.builder("biobert_ner/ncbi_disease", data_dir=str(tmp_path))
  assert isinstance(builder, tfds_ner.BiobertNer)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(data_dir / "ner")))
  # README of the shared data: NCBI-disease devel has 923 sentences (train 5424, test 940).
  splits = builder.info.splits
  assert (splits["train"].num_examples, splits["validation"].num_examples,
          splits["test"].num_examples) == (5424, 923, 940)
  ds = tfds.load("biobert_ner/ncbi_disease", split="validation", data_dir=str(tmp_path),
                 shuffle_files=False)
  names = builder.info.features["tags"].names
  assert names == ["O", "B-Disease", "I-Disease"]
  sentences, _ = ner.read_conll(data_dir / "ner" / "NCBI-disease" / "devel.tsv")
  got = {tuple(t.decode() for t in ex["tokens"].numpy()): [names[i] for i in ex["tags"].numpy()]
         for ex in ds}
  assert len(got) <= 923
  for s in sentences[:50]:
    assert got[tuple(s.words)] == s.tags
