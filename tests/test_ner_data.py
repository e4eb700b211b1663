"""NER reading, scheme conversion, word->piece alignment and window merging."""
import numpy as np
import pytest

from biobert_jax.metrics.ner import get_entities
from data_pipeline.tasks import ner
from data_pipeline.tokenization import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
  return load_tokenizer(minilm_dir / "vocab.txt", lowercase=True)


def _write(tmp_path, text, name="f.tsv"):
  path = tmp_path / name
  path.write_text(text, encoding="utf-8")
  return path


def test_reads_shared_ncbi_dev_counts(data_dir):
  sentences, stats = ner.read_conll(data_dir / "ner" / "NCBI-disease" / "devel.tsv",
                                    invalid_i="fail")
  # README of the shared data: 923 sentences, 23,969 tokens, 787 entities.
  assert (stats.sentences, stats.tokens, stats.repaired) == (923, 23969, 0)
  assert len(sentences) == 923
  assert sum(len(get_entities(s.tags)) for s in sentences) == 787
  assert ner.label_list(sentences) == ["O", "B-Disease", "I-Disease"]


def test_iobes_file_converts_to_iob2(testdata):
  sentences, _ = ner.read_conll(testdata / "ner_iobes.tsv", scheme="iobes")
  assert [s.tags for s in sentences] == [
      ["B-Disease", "I-Disease", "I-Disease", "O", "B-Gene", "O"], ["O", "O"]]
  assert sentences[1].source.endswith("ner_iobes.tsv:10")
  # The entities are the ones the IOBES tags describe (conlleval reads both schemes).
  iobes = ["B-Disease", "I-Disease", "E-Disease", "O", "S-Gene", "O"]
  assert get_entities(sentences[0].tags) == get_entities(iobes)


def test_iob1_to_iob2():
  assert ner.iob1_to_iob2(["I-X", "I-X", "B-X", "O", "I-Y", "I-X"]) == [
      "B-X", "I-X", "B-X", "O", "B-Y", "B-X"]


def test_bad_columns_names_file_and_line(testdata):
  with pytest.raises(ValueError, match=r"ner_bad_columns.tsv:5: expected 2 columns"):
    ner.read_conll(testdata / "ner_bad_columns.tsv")


def test_unknown_tag_names_file_and_line(tmp_path):
  path = _write(tmp_path, "a\tO\nb\tX-Disease\n")
  with pytest.raises(ValueError, match=r"f.tsv:2: unknown tag 'X-Disease'"):
    ner.read_conll(path)
  path = _write(tmp_path, "a\tO\nb\tB-Chem\n", "g.tsv")
  with pytest.raises(ValueError, match=r"g.tsv:2: unknown tag 'B-Chem'"):
    ner.read_conll(path, labels=["O", "B-Disease", "I-Disease"])


def test_dangling_i_repair_or_fail(tmp_path):
  path = _write(tmp_path, "a\tO\nb\tI-Disease\nc\tI-Disease\n\nd\tB-X\ne\tI-Y\n")
  with pytest.raises(ValueError, match=r"f.tsv:2: tag 'I-Disease' follows 'O'"):
    ner.read_conll(path, invalid_i="fail")
  sentences, stats = ner.read_conll(path, invalid_i="repair")
  assert [s.tags for s in sentences] == [["O", "B-Disease", "I-Disease"], ["B-X", "B-Y"]]
  assert stats.repaired == 2 and stats.repaired_at == [f"{path}:2", f"{path}:6"]


def test_alignment_round_trip(tokenizer):
  words = ["Adenomatous", "polyposis", "coli", "\x00", "(", "APC", ")", "tumour"]
  labels = [1, 2, 2, 0, 2, 2, 2, 0]
  pieces = tokenizer.encode_words([words])[0]
  assert pieces[3] == []  # a control character yields no piece ...
  ids, first = ner.align_pieces(pieces, tokenizer.unk_id)
  assert ids[first.index(3)] == tokenizer.unk_id  # ... and is kept as [UNK]
  assert len(ids) > len(words)  # "adenomatous" is several pieces
  features, extra = ner.build_features([(ids, first)], [labels], cls_id=tokenizer.cls_id,
                                       sep_id=tokenizer.sep_id, pad_id=tokenizer.pad_id,
                                       max_seq_length=32, stride=8)
  row = features["labels"][0]
  assert features["input_ids"][0, 0] == tokenizer.cls_id
  assert features["input_ids"][0, len(ids) + 1] == tokenizer.sep_id
  assert features["attention_mask"][0].sum() == len(ids) + 2
  assert np.sum(row != ner.IGNORE_LABEL) == len(words)  # one label per word, first piece
  assert ner.merge_windows(features["labels"], extra, [len(words)])[0].tolist() == labels


def test_window_merge_keeps_every_word(tokenizer):
  rng = np.random.default_rng(0)
  vocab = ["the", "tumour", "suppressor", "adenomatous", "polyposis", "of", "brca1", ",", "."]
  words = [str(w) for w in rng.choice(vocab, size=60)]
  labels = rng.integers(0, 3, size=60).tolist()
  ids, first = ner.align_pieces(tokenizer.encode_words([words])[0], tokenizer.unk_id)
  features, extra = ner.build_features([(ids, first), ner.align_pieces([[5]], 1)],
                                       [labels, [1]], cls_id=tokenizer.cls_id,
                                       sep_id=tokenizer.sep_id, pad_id=tokenizer.pad_id,
                                       max_seq_length=16, stride=7)
  assert features["input_ids"].shape[1] == 16 and features["input_ids"].shape[0] > 5
  # Every word is owned by exactly one window ...
  owned = [(s, w) for s, row in zip(extra["sentence_index"], extra["word_index"])
           for w in row if w >= 0]
  assert sorted(owned) == sorted(set(owned)) and len(owned) == 61
  # ... and merging the labels back loses nothing.
  merged = ner.merge_windows(features["labels"], extra, [60, 1])
  assert merged[0].tolist() == labels and merged[1].tolist() == [1]
  # A word's owner is the window where it is farthest from an edge.
  spans = ner.window_spans(len(ids), 14, 7)
  owner = ner.window_owner(spans, len(ids))
  p = spans[1][0] + 7  # centre-ish of window 1: 7 from its start, 6 from its end
  assert owner[p] == 1


def test_window_spans_cover_everything():
  for n in (0, 1, 13, 14, 15, 100):
    spans = ner.window_spans(n, 14, 5)
    covered = set()
    for s, e in spans:
      assert e - s <= 14
      covered.update(range(s, e))
    assert covered == set(range(n))
