"""ChemProt raw release -> sentence-level examples (BLUE's recipe)."""
import collections

import pytest

from data_pipeline.tasks import chemprot
from data_pipeline.tasks.chemprot import Mention

RAW = "re/chemprot/raw"


def test_tiny_release_by_hand(testdata):
  examples, stats = chemprot.build_split(testdata / "re_chemprot_raw", "train")
  by_guid = collections.defaultdict(list)
  for e in examples:
    by_guid[e.guid].append((e.text, e.label))
  assert by_guid["10000001.T1.T2"] == [("@CHEMICAL$ inhibits @GENE$ in cells.", "CPR:4")]
  assert by_guid["10000001.T6.T5"] == [
      ("The kinase @GENE$ was not affected by @CHEMICAL$.", "false")]
  # Two gold labels on one pair: both rows (BLUE's policy).
  assert by_guid["10000001.T7.T8"] == [("@CHEMICAL$ binds @GENE$.", "CPR:3"),
                                       ("@CHEMICAL$ binds @GENE$.", "CPR:4")]
  # Same span annotated as chemical and gene: one combined token.
  assert by_guid["10000001.T9.T10"] == [("The @CHEM-GENE$ antagonist was tested.", "false")]
  # T1 (title) - T5 (third sentence) is gold but crosses sentences: counted and dropped.
  assert stats["cross_sentence_pairs"] == 1 and stats["gold_rows"] == 4
  assert stats["examples"] == 6 and stats["positives"] == 3
  first, _ = chemprot.build_split(testdata / "re_chemprot_raw", "train", multi_label="first")
  assert [e.label for e in first if e.guid == "10000001.T7.T8"] == ["CPR:3"]


def test_anonymise_orders_and_overlaps():
  text = "X binds Y."
  chem, gene = Mention("T1", "CHEMICAL", 8, 9, "Y"), Mention("T2", "GENE-Y", 0, 1, "X")
  assert chemprot.anonymise(text, 0, chem, gene) == "@GENE$ binds @CHEMICAL$."
  nested = Mention("T3", "GENE-N", 10, 14, "ERK1")
  outer = Mention("T4", "CHEMICAL", 6, 22, "anti-ERK1 agents")
  assert chemprot.anonymise("Using anti-ERK1 agents.", 0, outer, nested) == "Using @CHEM-GENE$."


def test_no_sentence_boundary_inside_a_mention():
  text = "Levels of A. Coli toxin rose. Next one."
  mention = Mention("T1", "CHEMICAL", 10, 23, "A. Coli toxin")
  assert chemprot.sentence_spans(text, []) == [(0, 12), (13, 29), (30, 39)]
  assert chemprot.sentence_spans(text, [mention]) == [(0, 29), (30, 39)]


def test_bad_offsets_name_file_and_line(tmp_path, testdata):
  src = testdata / "re_chemprot_raw/chemprot_training"
  dst = tmp_path / "chemprot_training"
  dst.mkdir()
  for f in src.iterdir():
    (dst / f.name).write_text(f.read_text())
  lines = (dst / "chemprot_training_entities.tsv").read_text().splitlines()
  lines[2] = lines[2].replace("\t44\t51\t", "\t45\t52\t")
  (dst / "chemprot_training_entities.tsv").write_text("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=r"chemprot_training_entities.tsv:3: offsets 45-52"):
    chemprot.build_split(tmp_path, "train")


@pytest.fixture(scope="module")
def real(data_dir):
  return chemprot.build_all(data_dir / RAW)


def _gold_rows(data_dir, split):
  """Gold (pmid, chem, gene) -> labels, read independently of the module."""
  rows = collections.defaultdict(list)
  path = chemprot.split_files(data_dir / RAW, split)["gold"]
  for line in path.read_text(encoding="utf-8").splitlines():
    pmid, label, a1, a2 = line.split("\t")
    rows[(pmid, a1.split(":")[1], a2.split(":")[1])].append(label)
  return rows


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_real_release_every_in_sentence_gold_pair_once(real, data_dir, split):
  examples, stats = real[0][split], real[1][split]
  gold = _gold_rows(data_dir, split)
  assert stats["gold_rows"] == sum(len(v) for v in gold.values())
  positives = collections.defaultdict(list)
  for e in examples:
    pmid, chem, gene = e.guid.split(".")
    assert e.label in chemprot.EVALUATED_GROUPS + ("false",)
    if e.label != "false":
      positives[(pmid, chem, gene)].append(e.label)
    else:
      assert (pmid, chem, gene) not in gold
  # Every gold pair found in one sentence carries exactly its gold labels, once each.
  for key, labels in positives.items():
    assert sorted(labels) == sorted(gold[key])
  assert len(positives) + stats["cross_sentence_pairs"] == len(gold)
  # Each example text keeps exactly its two targets anonymised.
  for e in examples:
    assert (e.text.count("@CHEMICAL$"), e.text.count("@GENE$")) in ((1, 1), (0, 0))
    assert e.text.count("@CHEM-GENE$") == int("@CHEMICAL$" not in e.text)


def test_real_release_counts_against_published(real):
  _, stats = real
  # BLUE reports 4154 / 2416 / 3458 relations; BioBERT 10,031 in total (= gold rows).
  assert [stats[s]["positives"] for s in ("train", "dev", "test")] == [4157, 2416, 3458]
  assert sum(stats[s]["cross_sentence_pairs"] for s in stats) == 0
  assert [stats[s]["multi_label_pairs"] for s in ("train", "dev", "test")] == [10, 4, 14]
