"""BioBERT-format RE reader (GAD) and the relation featuriser."""
import collections

import numpy as np
import pytest

from data_pipeline.tasks import re as re_data


def test_layouts_detected_per_file(testdata):
  two = re_data.read_relation_tsv(testdata / "re_two_columns.tsv")
  three = re_data.read_relation_tsv(testdata / "re_three_columns.tsv")
  assert [e.label for e in two] == ["1", "0"] and [e.label for e in three] == ["1", "0"]
  assert two[1].text == "@DISEASE$ is not linked to @GENE$ here."
  assert three[0].guid == "0" and three[0].text == "The @GENE$ allele and @DISEASE$ risk."


def test_malformed_rows_name_file_and_line(testdata):
  with pytest.raises(ValueError, match=r"re_malformed_columns.tsv:3: expected 3"):
    re_data.read_relation_tsv(testdata / "re_malformed_columns.tsv")
  with pytest.raises(ValueError, match=r"re_malformed_label.tsv:2: label 'maybe'"):
    re_data.read_relation_tsv(testdata / "re_malformed_label.tsv", allowed_labels={"0", "1"})


def test_gad_fold1_counts_and_duplicates_kept(data_dir):
  """Row and label counts against an independent count of the raw lines."""
  train_lines = (data_dir / "re/gad/train.tsv").read_text(encoding="utf-8").splitlines()
  test_lines = (data_dir / "re/gad/test.tsv").read_text(encoding="utf-8").splitlines()[1:]
  splits = re_data.read_biobert_splits(data_dir / "re/gad")
  assert set(splits) == {"train", "test"}
  for split, lines in (("train", train_lines), ("test", test_lines)):
    examples = splits[split]
    assert len(examples) == len(lines)
    assert collections.Counter(e.label for e in examples) == collections.Counter(
        line.rsplit("\t", 1)[1] for line in lines)
  assert len(splits["train"]) == 4796 and len(splits["test"]) == 534
  assert len({e.text for e in splits["train"]}) < len(splits["train"])  # duplicates kept
  assert all(e.text.count("@GENE$") >= 1 and e.text.count("@DISEASE$") >= 1
             for e in splits["train"] + splits["test"])


def test_carve_dev_keeps_duplicates_together(data_dir):
  train = re_data.read_relation_tsv(data_dir / "re/gad/train.tsv")
  a_train, a_dev = re_data.carve_dev(train, 0.1, seed=12345)
  b_train, b_dev = re_data.carve_dev(train, 0.1, seed=12345)
  assert a_dev == b_dev and len(a_train) + len(a_dev) == len(train)
  assert not {e.text for e in a_train} & {e.text for e in a_dev}
  assert len({e.text for e in a_dev}) == round(len({e.text for e in train}) * 0.1)


@pytest.fixture(scope="module")
def gad_tokenizer(minilm_dir):
  from data_pipeline.tokenization import load_tokenizer
  return load_tokenizer(minilm_dir / "vocab.txt", lowercase=True,
                        extra_tokens=list(re_data.GAD_MARKERS))


def test_featurize_marks_entity_positions(gad_tokenizer, testdata):
  tok = gad_tokenizer
  examples = re_data.read_relation_tsv(testdata / "re_two_columns.tsv")
  examples.append(re_data.RelationExample("long", "word " * 40 + "@GENE$ and @DISEASE$ end", "1"))
  features, stats = re_data.featurize_relations(
      examples, tok, {"0": 0, "1": 1}, max_seq_length=16, markers=re_data.GAD_MARKERS)
  ids, pos = features["input_ids"], features["entity_positions"]
  gene_id, disease_id = tok.encode(["@GENE$", "@DISEASE$"])
  for i in range(len(examples)):
    assert ids[i, 0] == tok.cls_id
    assert ids[i, pos[i, 0]] == gene_id[0] and ids[i, pos[i, 1]] == disease_id[0]
    n = features["attention_mask"][i].sum()
    assert ids[i, n - 1] == tok.sep_id and np.all(ids[i, n:] == tok.pad_id)
  # Row 2 ("@DISEASE$ is not linked to @GENE$") puts the gene second in the text.
  assert pos[1, 0] > pos[1, 1]
  # The long row is truncated but its window slides to keep both markers.
  assert stats == {"truncated": 1, "missing_marker": 0}
  assert features["label_ids"].tolist() == [1, 0, 1]
