"""N-best span decoding and per-question aggregation on hand-made logits."""
import numpy as np
import pytest

from biobert_jax.metrics import qa_decoding

CONTEXT = "RPE65 causes Leber congenital amaurosis in children."
# Pieces of a window: [CLS] q [SEP] RPE65 causes Leber congenital amaurosis in children . [SEP]
PIECES = [(0, 5), (6, 12), (13, 18), (19, 29), (30, 39), (40, 42), (43, 51), (51, 52)]


def _window(start_at: dict, end_at: dict, max_context=None):
  length = 3 + len(PIECES) + 1
  offsets = np.full((length, 2), -1)
  offsets[3:3 + len(PIECES)] = PIECES
  start, end = np.zeros(length), np.zeros(length)
  for k, v in start_at.items():
    start[k] = v
  for k, v in end_at.items():
    end[k] = v
  mc = np.ones(length, bool) if max_context is None else max_context
  return {"start_logits": start, "end_logits": end, "token_offsets": offsets,
          "max_context": mc}


def test_best_span_maps_back_to_exact_substring():
  # Best: start at "Leber" (row 5), end at "amaurosis" (row 7); [CLS]/question rows are
  # higher but never valid.
  w = _window({0: 9, 1: 8, 5: 5, 3: 1}, {0: 9, 2: 8, 7: 4, 3: 1})
  best = qa_decoding.decode_example(CONTEXT, [w], n_best=5, max_answer_length=30)
  assert best[0]["text"] == "Leber congenital amaurosis"
  assert best[0]["score"] == pytest.approx(9.0)
  assert CONTEXT[best[0]["start"]:best[0]["end"]] == best[0]["text"]
  assert sum(b["probability"] for b in best) == pytest.approx(1.0)
  assert all(CONTEXT[b["start"]:b["end"]] == b["text"] for b in best)


def test_constraints_end_before_start_length_and_max_context():
  # End logit peaks before the start: that pair is invalid.
  w = _window({7: 10, 3: 1}, {3: 10, 7: 1})
  texts = [b["text"] for b in qa_decoding.decode_example(CONTEXT, [w], 5, 30)]
  assert "amaurosis" in texts and texts[0] != "RPE65 causes Leber congenital amaurosis"
  # Length limit 2 pieces: RPE65..amaurosis (5 pieces) is excluded.
  w = _window({3: 10}, {7: 10, 4: 1})
  best = qa_decoding.decode_example(CONTEXT, [w], 5, max_answer_length=2)
  assert best[0]["text"] == "RPE65 causes"
  # A start piece without max context in this window is skipped.
  mc = np.ones(12, bool)
  mc[3] = False
  w = _window({3: 10, 4: 1}, {3: 10, 4: 1}, max_context=mc)
  assert qa_decoding.decode_example(CONTEXT, [w], 5, 30)[0]["text"] == "causes"
  # No valid span at all: BERT's empty prediction.
  empty = np.zeros(12, bool)
  w = _window({}, {}, max_context=empty)
  assert qa_decoding.decode_example(CONTEXT, [w], 5, 30)[0]["text"] == ""


def test_windows_merge_by_max():
  w1 = _window({3: 2}, {3: 2})       # "RPE65" scores 4
  w2 = _window({3: 5}, {3: 1})       # "RPE65" scores 6 in the other window
  best = qa_decoding.decode_example(CONTEXT, [w1, w2], 3, 30)
  assert [b["text"] for b in best].count("RPE65") == 1
  assert best[0]["text"] == "RPE65" and best[0]["score"] == pytest.approx(6.0)


def test_rank_question_answers_sum_max_case_and_cleaning():
  ctx1 = [{"text": "RPE65", "probability": 0.5}, {"text": "LCA", "probability": 0.4},
          {"text": "(CEP290", "probability": 0.1}]
  ctx2 = [{"text": "lca.", "probability": 0.25}, {"text": "rpe65", "probability": 0.2},
          {"text": "x" * 101, "probability": 0.9}]
  by_sum = qa_decoding.rank_question_answers([ctx1, ctx2], merge="sum")
  # RPE65: 0.5 + 0.2 (case-insensitive duplicate); LCA: 0.4 + 0.25 ("lca." cleaned).
  assert by_sum == [("RPE65", pytest.approx(0.7)), ("LCA", pytest.approx(0.65))]
  by_max = qa_decoding.rank_question_answers([ctx1, ctx2], merge="max")
  assert by_max == [("RPE65", 0.5), ("LCA", 0.4)]   # "(CEP290" and the 101-char text dropped
  assert qa_decoding.clean_answer("(RPE65)") == "RPE65"
  assert qa_decoding.clean_answer("RPE65,") == "RPE65"
  assert qa_decoding.clean_answer("RPE65 (gene") == ""
  top = qa_decoding.rank_question_answers(
      [[{"text": f"a{i}", "probability": 1 / (i + 1)} for i in range(9)]], top_k=5)
  assert [t for t, _ in top] == ["a0", "a1", "a2", "a3", "a4"]


def _unbounded(context, windows, n_best, max_answer_length):
  """BERT's run_squad order: every valid pair of every window, sorted, first n_best texts."""
  prelim = []
  for w in windows:
    for score, s, e in qa_decoding.window_candidates(
        w["start_logits"], w["end_logits"], w["token_offsets"], w["max_context"], n_best,
        max_answer_length):
      prelim.append((score, int(w["token_offsets"][s, 0]), int(w["token_offsets"][e, 1])))
  prelim.sort(key=lambda c: -c[0])
  seen, out = set(), []
  for score, a, b in prelim:
    text = qa_decoding.final_text(context[a:b])
    if text not in seen:
      seen.add(text)
      out.append((text, score))
  return out[:n_best]


def test_bounded_decoding_keeps_n_best_per_window_and_equals_unbounded():
  rng = np.random.default_rng(0)
  # Repeated words make equal texts at different positions and in different windows.
  words = [["RPE65", "LCA", "gene", "causes", "blindness"][i] for i in rng.integers(0, 5, 40)]
  context = " ".join(words)
  starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
  pieces = [(int(s), int(s) + len(w)) for s, w in zip(starts, words)]
  length, stride, width = 16, 6, 12  # 3 question rows + 12 context rows + [SEP]
  windows, owner = [], {}
  for w_start in range(0, len(pieces) - width + stride, stride):
    span = pieces[w_start:w_start + width]
    offsets = np.full((length, 2), -1)
    offsets[3:3 + len(span)] = span
    max_context = np.zeros(length, bool)
    for j in range(len(span)):  # the first window holding a piece owns it (a valid rule)
      if owner.setdefault(w_start + j, len(windows)) == len(windows):
        max_context[3 + j] = True
    windows.append({"start_logits": rng.normal(size=length), "end_logits": rng.normal(size=length),
                    "token_offsets": offsets, "max_context": max_context})
  assert len(windows) >= 5
  for n_best in (1, 3, 5, 20):
    for w in windows:
      assert len(qa_decoding.window_nbest(context, w, n_best, 8)) <= n_best
    got = qa_decoding.decode_example(context, windows, n_best, 8)
    want = _unbounded(context, windows, n_best, 8)
    assert [(g["text"], g["score"]) for g in got] == want
    assert all(context[g["start"]:g["end"]] == g["text"] for g in got)


def test_answer_whitespace_runs_collapse_like_get_final_text():
  context = "RPE65  causes\n\tLeber\u00a0amaurosis."
  pieces = [(0, 5), (7, 13), (15, 20), (21, 30), (30, 31)]
  offsets = np.full((9, 2), -1)
  offsets[3:8] = pieces
  start, end = np.zeros(9), np.zeros(9)
  start[3], end[6] = 5, 5
  w = {"start_logits": start, "end_logits": end, "token_offsets": offsets,
       "max_context": np.ones(9, bool)}
  best = qa_decoding.decode_example(context, [w], 3, 30)[0]
  # BERT splits doc tokens at " \t\r\n" and U+202F only, so the no-break space stays.
  assert best["text"] == "RPE65 causes Leber\u00a0amaurosis"
  assert context[best["start"]:best["end"]] == "RPE65  causes\n\tLeber\u00a0amaurosis"
  raw = qa_decoding.decode_example(context, [w], 3, 30, collapse_whitespace=False)[0]
  assert raw["text"] == context[raw["start"]:raw["end"]]
