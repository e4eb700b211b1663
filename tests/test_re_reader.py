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
  assert stats["truncated"] == 1
  assert stats["rows_missing_marker"] == 0 and stats["rows_marker_cut"] == 0
  assert features["label_ids"].tolist() == [1, 0, 1]


@pytest.fixture(scope="module")
def plain_tokenizer(minilm_dir):
  from data_pipeline.tokenization import load_tokenizer
  return load_tokenizer(minilm_dir / "vocab.txt", lowercase=True)


def test_word_piece_markers_pool_the_first_piece(plain_tokenizer, testdata):
  """BioBERT's input: @GENE$ is ordinary text (@ gene $); pooling reads its first piece."""
  tok = plain_tokenizer
  examples = re_data.read_relation_tsv(testdata / "re_two_columns.tsv")
  examples.append(re_data.RelationExample("long", "word " * 40 + "@GENE$ and @DISEASE$ end", "1"))
  with pytest.raises(ValueError, match="not a single token.*word_pieces"):
    re_data.featurize_relations(examples, tok, {"0": 0, "1": 1}, 16, re_data.GAD_MARKERS)
  features, stats = re_data.featurize_relations(
      examples, tok, {"0": 0, "1": 1}, 16, re_data.GAD_MARKERS, marker_mode="word_pieces")
  gene, disease = tok.encode(["@GENE$", "@DISEASE$"])
  assert len(gene) > 1 and len(disease) > 1 and gene[0] == disease[0]  # "@" starts both
  ids, pos = features["input_ids"], features["entity_positions"]
  for i in range(len(examples)):
    for k, marker in enumerate((gene, disease)):
      p = pos[i, k]
      assert p > 0 and ids[i, p] == marker[0], (i, k)
      if i < 2:  # the long row's last marker may lose its tail pieces to the window
        assert ids[i, p:p + len(marker)].tolist() == marker, (i, k)
  assert pos[1, 0] > pos[1, 1]
  assert stats["truncated"] == 1 and stats["rows_missing_marker"] == 0


def test_overlap_marker_as_word_pieces_fills_both(plain_tokenizer):
  ex = [re_data.RelationExample("0", "x @CHEM-GENE$ binds @GENE$ and @CHEMICAL$", "false")]
  features, _ = re_data.featurize_relations(
      ex, plain_tokenizer, {"false": 0}, 32, re_data.CHEMPROT_MARKERS,
      re_data.CHEMPROT_OVERLAP_MARKER, marker_mode="word_pieces")
  assert features["entity_positions"].tolist() == [[2, 2]]  # [CLS] x @ chem - gene $


def test_rows_missing_a_marker_are_counted_and_reach_eval_results(gad_tokenizer):
  from biobert_jax.tasks import re as re_task
  from biobert_jax.tasks.base import SplitData
  examples = [re_data.RelationExample("a", "@GENE$ causes @DISEASE$", "1"),
              re_data.RelationExample("b", "@GENE$ alone", "0"),
              re_data.RelationExample("c", "@DISEASE$ " + "w " * 30 + "@GENE$", "0")]
  features, stats = re_data.featurize_relations(
      examples, gad_tokenizer, {"0": 0, "1": 1}, 8, re_data.GAD_MARKERS)
  assert stats["rows_missing_marker"] == 1 and stats["missing_marker_guids"] == ["b"]
  assert stats["rows_marker_cut"] == 1 and stats["marker_cut_guids"] == ["c"]
  assert features["entity_positions"][1].tolist() == [1, 0]  # 0 = [CLS] for the missing one
  split = SplitData(features, examples, {"labels": ["0", "1"], "featurize": stats})
  result = re_task.TASK.evaluate({"labels": ["1", "0", "0"]}, split, None)
  assert result["rows_missing_marker"] == 1 and result["rows_marker_cut"] == 1
  assert result["f1"] == 1.0


def test_label_outside_the_corpus_set_names_file_and_line(tmp_path):
  (tmp_path / "train.tsv").write_text("@GENE$ and @DISEASE$.\t1\n@GENE$ or @DISEASE$.\t1 \n"
                                      "@GENE$ in @DISEASE$.\t2\n", encoding="utf-8")
  with pytest.raises(ValueError, match=r"train.tsv:3: label '2' is not one of \['0', '1'\]"):
    re_data.read_biobert_splits(tmp_path, allowed_labels=re_data.expected_labels(
        re_data.GAD_MARKERS))
  import ml_collections
  from biobert_jax.tasks import re as re_task
  from data_pipeline.errors import InputError
  config = ml_collections.ConfigDict({"data_dir": str(tmp_path), "task": "re", "seed": 0,
                                      "max_train_examples": 0, "max_eval_examples": 0,
                                      "re": {"dataset": "auto", "labels": ()}})
  assert re_task.label_list(config) == ["0", "1"]
  with pytest.raises(InputError, match=r"train.tsv:3: label '2'"):
    re_task.TASK.read_examples(config)
