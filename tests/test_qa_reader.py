"""SQuAD/BioASQ reader and doc_stride window features."""
import collections
import json
import re

import numpy as np
import pytest

from data_pipeline.tasks import qa as qa_data


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
  from data_pipeline.tokenization import load_tokenizer
  return load_tokenizer(minilm_dir / "vocab.txt", lowercase=True)


def test_read_tiny_and_question_ids(testdata):
  examples = qa_data.read_squad(testdata / "qa_tiny_squad.json", require_answers=True)
  assert [e.question_id for e in examples] == ["a" * 24, "a" * 24, "b" * 24]
  assert examples[2].answers == (("cyclooxygenase 1", 30),)
  assert qa_data.question_id_of("plain-id") == "plain-id"


def test_bad_answer_start_is_named(testdata):
  with pytest.raises(ValueError, match=r"qa_bad_answer_start.json.*bbbb.*answer_start 29"):
    qa_data.read_squad(testdata / "qa_bad_answer_start.json")


def test_real_bioasq_counts(data_dir):
  train = qa_data.read_squad(
      data_dir / "qa/bioasq6b/BioASQ-train-factoid-7b-minus-6b-test.json", require_answers=True)
  assert len(train) == 3512 and len({e.question_id for e in train}) == 416
  for batch, (contexts, questions) in enumerate([(121, 31), (78, 21), (93, 32), (88, 33),
                                                 (145, 44)], start=1):
    path = data_dir / f"qa/bioasq6b/BioASQ-test-factoid-6b-{batch}.json"
    examples = qa_data.read_squad(path)
    raw = json.loads(path.read_text())
    assert len(examples) == contexts == sum(len(p["qas"]) for p in raw["data"][0]["paragraphs"])
    assert len({e.question_id for e in examples}) == questions
    assert all(not e.answers for e in examples)


def test_windows_cover_long_context_and_locate_answers(tokenizer):
  filler = " ".join(f"word{i}" for i in range(60))
  context = f"{filler} The answer is RPE65 here. {filler}"
  start = context.index("RPE65")
  example = qa_data.QAExample("q_000", "Which gene?", context, (("RPE65", start),))
  features, extra = qa_data.featurize_qa([example], tokenizer, max_seq_length=48,
                                         doc_stride=16)
  n = len(features["input_ids"])
  assert n > 3
  q_len = len(tokenizer.encode(["Which gene?"])[0])
  found = 0
  covered = collections.Counter()
  for f in range(n):
    ids, types = features["input_ids"][f], features["token_type_ids"][f]
    length = features["attention_mask"][f].sum()
    assert ids[0] == tokenizer.cls_id and ids[q_len + 1] == tokenizer.sep_id
    assert ids[length - 1] == tokenizer.sep_id
    assert np.all(types[:q_len + 2] == 0) and np.all(types[q_len + 2:length] == 1)
    offsets = extra["token_offsets"][f]
    context_rows = np.where(offsets[:, 0] >= 0)[0]
    assert context_rows.min() == q_len + 2 and context_rows.max() == length - 2
    for row in context_rows:
      covered[tuple(offsets[row])] += int(extra["max_context"][f][row])
    s, e = features["start_positions"][f], features["end_positions"][f]
    if s:
      found += 1
      assert context[offsets[s][0]:offsets[e][1]] == "RPE65"
    else:
      assert e == 0
  assert found >= 1
  # Every context piece has its max context in exactly one window.
  all_offsets = tokenizer.encode_with_offsets([context])[0][1]
  assert sorted(covered) == sorted(map(tuple, all_offsets))
  assert set(covered.values()) == {1}


def _squad(tmp_path, answers=None, article=None):
  qa = {"id": "c" * 24 + "_001", "question": "Which gene?"}
  if answers is not None:
    qa["answers"] = answers
  if article is None:
    article = {"title": "t", "paragraphs": [{"context": "The gene RPE65 is mutated.",
                                             "qas": [qa]}]}
  path = tmp_path / "bad.json"
  path.write_text(json.dumps({"version": "BioASQ6b", "data": [article]}), encoding="utf-8")
  return path


@pytest.mark.parametrize("answer,problem", [
    ({"text": "RPE65"}, "answer has no 'answer_start'"),
    ({"text": "RPE65", "answer_start": "9"}, "answer_start '9' is not an integer"),
    ({"text": "RPE65", "answer_start": 9.0}, "answer_start 9.0 is not an integer"),
    ({"text": "RPE65", "answer_start": True}, "answer_start True is not an integer"),
    ({"text": "RPE65", "answer_start": -1}, "answer_start -1 is negative"),
    ({"text": "", "answer_start": 9}, "answer text '' is empty"),
    ({"text": "  ", "answer_start": 9}, "answer text '  ' is empty"),
    ({"answer_start": 9}, "answer has no 'text'"),
    ({"text": None, "answer_start": 9}, "answer text None is not a string"),
])
def test_bad_answers_name_file_and_question_id(tmp_path, answer, problem):
  from data_pipeline.errors import InputError
  path = _squad(tmp_path, [answer])
  with pytest.raises(InputError, match=r"bad.json: data\[0\].paragraphs\[0\] \(id c{24}_001\): "
                     + re.escape(problem)):
    qa_data.read_squad(path)


def test_article_without_paragraphs_is_an_error(tmp_path):
  from data_pipeline.errors import InputError
  path = _squad(tmp_path, article={"title": "misspelt", "paragraph": []})
  with pytest.raises(InputError, match=r"bad.json: data\[0\] \('misspelt'\) must be an object "
                     "with a 'paragraphs' list"):
    qa_data.read_squad(path)
  ok = _squad(tmp_path, [{"text": "RPE65", "answer_start": 9}])
  assert qa_data.read_squad(ok, require_answers=True)[0].answers == (("RPE65", 9),)
