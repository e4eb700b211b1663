"""ChemProt (BioCreative VI) raw release -> sentence-level RE examples with BLUE's recipe
(`@CHEMICAL$`/`@GENE$`, `@CHEM-GENE$` for overlaps, CPR group or "false").
"""
from __future__ import annotations

import collections
import dataclasses
import os
import pathlib

from data_pipeline import textio
from data_pipeline.corpora.sentences import split_sentences
from data_pipeline.errors import InputError
from data_pipeline.tasks.re import RelationExample

SPLITS = {"train": ("chemprot_training", "training", ""),
          "dev": ("chemprot_development", "development", ""),
          "test": ("chemprot_test_gs", "test", "_gs")}
GENE_TYPES = ("GENE-Y", "GENE-N")
EVALUATED_GROUPS = ("CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9")


@dataclasses.dataclass(frozen=True)
class Mention:
  id: str
  type: str
  start: int
  end: int
  text: str


def split_files(raw_dir: str | os.PathLike, split: str) -> dict[str, pathlib.Path]:
  """Paths of one split's abstracts / entities / gold_standard files."""
  folder, stem, suffix = SPLITS[split]
  d = pathlib.Path(raw_dir) / folder
  return {"abstracts": d / f"chemprot_{stem}_abstracts{suffix}.tsv",
          "entities": d / f"chemprot_{stem}_entities{suffix}.tsv",
          "gold": d / f"chemprot_{stem}_gold_standard.tsv"}


def _rows(path: pathlib.Path, num_fields: int):
  with textio.open_lines(path) as lines:  # InputError on bad UTF-8; BOM dropped
    for lineno, line in lines:
      if not line.strip():
        continue
      fields = line.split("\t")
      if len(fields) != num_fields:
        raise InputError(f"{path}:{lineno}: expected {num_fields} tab-separated fields, "
                         f"got {len(fields)}")
      yield lineno, fields


def read_documents(path: pathlib.Path) -> dict[str, str]:
  """{pmid: title + " " + abstract}."""
  return {pmid: f"{title} {abstract}" for _, (pmid, title, abstract) in _rows(path, 3)}


def read_mentions(path: pathlib.Path, documents: dict[str, str]
                  ) -> dict[str, list[Mention]]:
  """{pmid: mentions}; each mention's text is checked against its offsets."""
  mentions = collections.defaultdict(list)
  for lineno, (pmid, tid, etype, start, end, text) in _rows(path, 6):
    if pmid not in documents:
      raise InputError(f"{path}:{lineno}: PMID {pmid} has no abstract")
    if not (start.isascii() and start.isdigit() and end.isascii() and end.isdigit()):
      raise InputError(f"{path}:{lineno}: offsets {start!r}-{end!r} are not integers")
    m = Mention(tid, etype, int(start), int(end), text)
    if documents[pmid][m.start:m.end] != text:
      raise InputError(f"{path}:{lineno}: offsets {start}-{end} of {tid} give "
                       f"{documents[pmid][m.start:m.end]!r}, not {text!r}")
    mentions[pmid].append(m)
  return mentions


def read_gold(path: pathlib.Path) -> list[tuple[str, str, str, str]]:
  """[(pmid, group, chemical id, gene id)] in file order."""
  gold = []
  for lineno, (pmid, group, arg1, arg2) in _rows(path, 4):
    if not (arg1.startswith("Arg1:") and arg2.startswith("Arg2:")):
      raise InputError(f"{path}:{lineno}: arguments must read Arg1:T<i> Arg2:T<j>")
    gold.append((pmid, group, arg1[5:], arg2[5:]))
  return gold


def sentence_spans(text: str, mentions: list[Mention]) -> list[tuple[int, int]]:
  """[start, end) character spans of the sentences of `text`, never cutting a mention."""
  spans, cursor = [], 0
  for sentence in split_sentences(text):
    start = text.find(sentence, cursor)
    if start < 0:  # the splitter only strips whitespace, so this cannot happen
      raise AssertionError(f"sentence not found in its text: {sentence[:60]!r}")
    spans.append([start, start + len(sentence)])
    cursor = start + len(sentence)
  merged: list[list[int]] = []
  for span in spans:
    if merged and any(m.start < span[0] and m.end > merged[-1][1] for m in mentions):
      merged[-1][1] = span[1]  # a mention straddles the boundary: undo the split
    else:
      merged.append(span)
  return [(s, e) for s, e in merged]


def anonymise(text: str, offset: int, chem: Mention, gene: Mention) -> str:
  """Replaces the two target mentions of a sentence (text starts at `offset`)."""
  c0, c1, g0, g1 = chem.start - offset, chem.end - offset, gene.start - offset, gene.end - offset
  if c0 <= g0 <= c1 or c0 <= g1 <= c1 or g0 <= c0 <= g1 or g0 <= c1 <= g1:
    start, end = min(c0, g0), max(c1, g1)
    return text[:start] + "@CHEM-GENE$" + text[end:]
  (a0, a1, a_tok), (b0, b1, b_tok) = sorted([(c0, c1, "@CHEMICAL$"), (g0, g1, "@GENE$")])
  return text[:a0] + a_tok + text[a1:b0] + b_tok + text[b1:]


def build_split(raw_dir: str | os.PathLike, split: str, multi_label: str = "both"
                ) -> tuple[list[RelationExample], dict]:
  """Sentence-level examples of one split and statistics about what was kept/lost."""
  if multi_label not in ("both", "first"):
    raise ValueError(f"multi_label must be 'both' or 'first', got {multi_label!r}")
  files = split_files(raw_dir, split)
  documents = read_documents(files["abstracts"])
  mentions = read_mentions(files["entities"], documents)
  gold = read_gold(files["gold"])
  labels: dict[tuple[str, str, str], list[str]] = collections.defaultdict(list)
  for pmid, group, chem, gene in gold:
    labels[(pmid, chem, gene)].append(group)
  examples, found, sentences, undone = [], set(), 0, 0
  for pmid, text in documents.items():
    doc_mentions = mentions.get(pmid, [])
    spans = sentence_spans(text, doc_mentions)
    sentences += len(spans)
    undone += len(split_sentences(text)) - len(spans)
    for s_start, s_end in spans:
      inside = [m for m in doc_mentions if s_start <= m.start and m.end <= s_end]
      chems = [m for m in inside if m.type == "CHEMICAL"]
      genes = [m for m in inside if m.type in GENE_TYPES]
      sentence = text[s_start:s_end]
      for chem in chems:
        for gene in genes:
          row = anonymise(sentence, s_start, chem, gene)
          row = row.replace("\t", " ").replace("\n", " ").replace("\r", " ")
          guid = f"{pmid}.{chem.id}.{gene.id}"
          pair_labels = labels.get((pmid, chem.id, gene.id), ["false"])
          if pair_labels != ["false"]:
            found.add((pmid, chem.id, gene.id))
          if multi_label == "first":
            pair_labels = pair_labels[:1]
          examples.extend(RelationExample(guid, row, label) for label in pair_labels)
  label_counts = collections.Counter(e.label for e in examples)
  multi = sum(1 for v in labels.values() if len(v) > 1)
  lost = [key for key in labels if key not in found]
  stats = {
      "split": split, "documents": len(documents), "sentences": sentences,
      "boundaries_inside_mentions": undone, "examples": len(examples),
      "labels": dict(sorted(label_counts.items())),
      "positives": sum(c for k, c in label_counts.items() if k != "false"),
      "gold_rows": len(gold), "gold_pairs": len(labels), "multi_label_pairs": multi,
      "cross_sentence_pairs": len(lost),
      "cross_sentence_rows": sum(len(labels[k]) for k in lost),
  }
  return examples, stats


def build_all(raw_dir: str | os.PathLike, multi_label: str = "both"
              ) -> tuple[dict[str, list[RelationExample]], dict[str, dict]]:
  """All three splits: ({"train", "dev", "test"}: examples, {split: stats})."""
  examples, stats = {}, {}
  for split in SPLITS:
    examples[split], stats[split] = build_split(raw_dir, split, multi_label)
  return examples, stats
