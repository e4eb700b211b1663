"""Tokenizer parity with HuggingFace `tokenizers` and transformers' slow BertTokenizer.

References: `tokenizers.BertWordPieceTokenizer` (Rust) on every sentence of the shared NER
corpora and every PubMed abstract, for the cased and the uncased vocab, for both faces;
`transformers.BertTokenizer` (the Python port of the original BERT tokenizer) on a
subset and on the named corner cases.
"""
import unicodedata

import pytest
import tokenizers
import transformers

from data_pipeline import tokenization
from data_pipeline.errors import InputError
from data_pipeline.tokenization import chars as tokenization_chars
from data_pipeline._tf import tf

VOCABS = {"cased": ("bert-base-cased-vocab.txt", False),
          "uncased": ("bert-base-uncased-vocab.txt", True)}

# Named corner cases from the issue; each is checked against both references.
CORNER_CASES = {
    "accents": "café naïve Ångström Müller-Lyer Curaçao",
    "greek": "α-synuclein TNF-β Δ9 IFN-γ κB ΔΔCt",
    "greek_final_sigma": "ΟΔΟΣ ΑΣ.Β ΣΑΣ,",
    "chemical_primes": "2'-deoxy-5-fluorouridine 3′,5′-cyclic AMP 5''-triphosphate",
    "chemical_brackets": "N-[2-(4-chlorophenyl)ethyl]-{[(1R,2S)-x]}",
    "relations": "≥ 5 ≤ 3 ± 0.2 ~ 10 x^2 `q` a+b<c=d>e|f $5",
    "trademark_super_micro": "Tween™ 20, 5 m² area, 10 µm (micro sign) and 10 μm (mu)",
    "long_token": "x" * 201 + " ok " + "y" * 200 + " " + "é" * 60 + " " + "z" * 150,
    "empty": "",
    "whitespace_only": " \t\n\r\u00a0\u3000 ",
    "control_chars": "a\x00b\x07c\u200bd\ufffde \x0bf\x1fg\u2028h",
    "cjk": "中文字符 mixed中文text 日本語のテキスト 한국어",
    "unicode_spaces": "a\u2009b\u202fc\u00a0d",
    "combining_marks": "cafe\u0301 \u0301 n\u0303o",
}


def _read_ner_sentences(data_dir) -> list[str]:
  seen, out = set(), []
  for corpus in ("NCBI-disease", "BC5CDR-chem", "BC5CDR-disease"):
    for split in ("train", "devel", "test"):
      tokens: list[str] = []
      lines = (data_dir / "ner" / corpus / f"{split}.tsv").read_text("utf-8").split("\n")
      for line in lines:
        if line.strip():
          tokens.append(line.split("\t")[0])
        elif tokens:
          sentence = " ".join(tokens)
          if sentence not in seen:  # BC5CDR-chem and -disease share their sentences
            seen.add(sentence)
            out.append(sentence)
          tokens = []
  return out


@pytest.fixture(scope="module")
def corpus(data_dir) -> list[str]:
  abstracts = list(tokenization.read_text_lines(data_dir / "pretrain" / "pubmed_abstracts.txt"))
  return _read_ner_sentences(data_dir) + abstracts


@pytest.fixture(scope="module", params=sorted(VOCABS))
def setup(request, data_dir):
  """(ours, HF tokenizers, transformers slow, lowercase) for one vocabulary."""
  filename, lowercase = VOCABS[request.param]
  path = str(data_dir / "vocab" / filename)
  ours = tokenization.load_tokenizer(path, lowercase=lowercase)
  hf = hf_wordpiece(path, lowercase)
  slow = transformers.BertTokenizer(path, do_lower_case=lowercase, strip_accents=lowercase)
  # Original BERT (and we) turn words longer than 200 characters into [UNK]; both HF
  # references default to 100, so they are given BERT's value.
  slow.wordpiece_tokenizer.max_input_chars_per_word = MAX_CHARS
  return ours, hf, slow, lowercase


MAX_CHARS = 200


def hf_wordpiece(path, lowercase):
  """HF tokenizers' BERT tokenizer with original BERT's max_input_chars_per_word."""
  hf = tokenizers.BertWordPieceTokenizer(path, lowercase=lowercase, strip_accents=lowercase,
                                         clean_text=True, handle_chinese_chars=True)
  hf._tokenizer.model = tokenizers.models.WordPiece(
      hf.get_vocab(), unk_token="[UNK]", max_input_chars_per_word=MAX_CHARS)
  return hf


def _slow_ids(slow, text):
  """The slow port's BasicTokenizer + WordpieceTokenizer, i.e. original BERT's pipeline.

  (Its `tokenize()` wrapper lowercases char by char around added tokens, which loses
  BERT's word-final sigma; the BasicTokenizer itself uses str.lower() like BERT.)
  """
  words = slow.basic_tokenizer.tokenize(text)
  pieces = [p for w in words for p in slow.wordpiece_tokenizer.tokenize(w)]
  return slow.convert_tokens_to_ids(pieces)


def _hf_ids(hf, texts):
  return [e.ids[1:-1] for e in hf.encode_batch(texts)]  # drop [CLS] ... [SEP]


def _graph_ids(tokenizer, texts):
  """Per-text piece ids from the in-graph face (RaggedTensor.to_list is too slow here)."""
  ragged = tokenizer.tokenize_tf(tf.constant(texts, dtype=tf.string))
  pieces = ragged.flat_values.numpy()
  splits = ragged.values.row_splits.numpy()[ragged.row_splits.numpy()]
  return [pieces[a:b].tolist() for a, b in zip(splits[:-1], splits[1:])]


def _mismatches(got, want, texts):
  return [(t[:80], g[:20], w[:20]) for t, g, w in zip(texts, got, want) if g != w]


def _differs_only_by_final_sigma(text: str) -> bool:
  # HF tokenizers lowercases char by char; BERT's str.lower() maps a word-final capital
  # sigma to "ς". Texts with a capital sigma are compared against the slow port instead
  # (the shared corpora have none, so nothing is skipped there; the test asserts it).
  return "Σ" in text


@pytest.fixture(scope="module")
def hf_corpus_ids(setup, corpus):
  """(texts, HF ids) for the corpora, computed once per vocabulary for both faces."""
  _, hf, _, lowercase = setup
  texts = [t for t in corpus if not (lowercase and _differs_only_by_final_sigma(t))]
  assert len(texts) == len(corpus)
  return texts, _hf_ids(hf, texts)


@pytest.mark.slow
def test_python_face_matches_hf_tokenizers_on_corpora(setup, hf_corpus_ids):
  texts, want = hf_corpus_ids
  assert _mismatches(setup[0].encode(texts), want, texts) == []


@pytest.mark.slow
def test_graph_face_matches_hf_tokenizers_on_corpora(setup, hf_corpus_ids):
  texts, want = hf_corpus_ids
  assert _mismatches(_graph_ids(setup[0], texts), want, texts) == []


@pytest.mark.slow
def test_both_faces_match_slow_bert_tokenizer_on_a_subset(setup, corpus):
  ours, _, slow, _ = setup
  texts = corpus[::150]  # ~170 texts: NER sentences and abstracts
  want = [_slow_ids(slow, t) for t in texts]
  assert _mismatches(ours.encode(texts), want, texts) == []
  assert _mismatches(_graph_ids(ours, texts), want, texts) == []


@pytest.mark.parametrize("name", sorted(CORNER_CASES))
def test_corner_cases_match_references(setup, name):
  ours, hf, slow, lowercase = setup
  text = CORNER_CASES[name]
  if unicodedata.normalize("NFC", text) == text:
    want = _slow_ids(slow, text)
    if not (lowercase and _differs_only_by_final_sigma(text)):
      assert _hf_ids(hf, [text]) == [want]  # the two references agree here
  else:
    # transformers' BasicTokenizer NFC-normalises first (original BERT does not), so for
    # decomposed input only HF tokenizers (no NFC, like BERT) is the reference.
    want = _hf_ids(hf, [text])[0]
  assert ours.encode([text]) == [want]
  assert _graph_ids(ours, [text]) == [want]


def test_corner_case_expectations_by_name(setup):
  ours, _, _, lowercase = setup
  enc = lambda text: ours.convert_ids_to_tokens(ours.encode([text])[0])  # noqa: E731
  assert enc("x" * 201) == ["[UNK]"]  # longer than 200 chars (BERT's limit)
  assert "[UNK]" not in enc("x" * 200) and "[UNK]" not in enc("x" * 101)  # HF: [UNK]
  assert enc("") == [] and enc(" \t\n\u3000 ") == [] and enc("\x00\x07") == []
  assert enc("a\x00b") == enc("ab")  # control chars are dropped, not split on
  assert enc("中文") == ["中", "文"]
  assert enc("$^`~+<=>|") == list("$^`~+<=>|")  # ASCII symbols are punctuation
  # The tf-text trap: BERT keeps ™ ² µ as they are (no NFKC), cased or uncased.
  assert enc("™ ² µ") == ["[UNK]" if ch not in ours.vocab else ch for ch in "™²µ"]
  if lowercase:
    assert enc("Ångström") == enc("angstrom")
    assert enc("ΟΔΟΣ") == enc("οδος")  # str.lower(): word-final sigma
  else:
    assert enc("Café") != enc("cafe")


def _normalise(text: str, lowercase: bool) -> str:
  text = "".join(c for c in text if not tokenization_chars.is_removed(c))
  if lowercase:
    text = "".join(c for c in unicodedata.normalize("NFD", text.lower())
                   if unicodedata.category(c) != "Mn")
  return text


def _assert_offsets_map_back(tokenizer, texts):
  for text, (ids, spans) in zip(texts, tokenizer.encode_with_offsets(texts)):
    assert ids == tokenizer.encode([text])[0]
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)
    for piece, (start, end) in zip(tokenizer.convert_ids_to_tokens(ids), spans):
      assert 0 <= start < end <= len(text)
      if piece == "[UNK]":
        assert text[start:end].strip() == text[start:end]
        continue
      # A span alone loses the context of the word-final sigma rule, hence ς ~ σ.
      got = _normalise(text[start:end], tokenizer.lowercase).replace("ς", "σ")
      want = piece.removeprefix("##").replace("ς", "σ")
      if any(len(_normalise(c, tokenizer.lowercase)) > 1 for c in text[start:end]):
        # One char normalised to several (Hangul NFD -> jamo) and a piece may hold part
        # of them: its span is then the whole original char.
        assert want in got, (text, piece, start, end)
      else:
        assert got == want, (text, piece, start, end)


@pytest.mark.slow
def test_offsets_map_back_on_corpora_sample(setup, corpus):
  ours, _, _, _ = setup
  _assert_offsets_map_back(ours, corpus[::40])


def test_offsets_map_back_on_corner_cases(setup):
  ours, _, _, _ = setup
  _assert_offsets_map_back(ours, list(CORNER_CASES.values()))
  ids, spans = ours.encode_with_offsets(["ab " + "x" * 201 + " cd"])[0]
  assert ours.convert_ids_to_tokens(ids)[ids.index(ours.unk_id)] == "[UNK]"
  assert spans[ids.index(ours.unk_id)] == (3, 204)  # [UNK] covers the whole word


@pytest.mark.slow
def test_encode_words_matches_hf_pretokenized(setup, corpus):
  ours, hf, _, _ = setup
  sentences = [t.split(" ") for t in corpus[:2000]] + [["a", "\x07", "", "b"]]
  got = ours.encode_words(sentences)
  for words, word_ids, enc in zip(sentences, got, hf.encode_batch(sentences, is_pretokenized=True)):
    want = [[] for _ in words]
    for piece_id, word in zip(enc.ids, enc.word_ids):
      if word is not None:
        want[word].append(piece_id)
    assert word_ids == want
  assert got[-1][1] == [] and got[-1][2] == []  # control char / empty word: no pieces


def test_extra_tokens_are_never_split(setup, data_dir):
  ours, _, _, lowercase = setup
  filename, _ = VOCABS["uncased" if lowercase else "cased"]
  extras = ("@GENE$", "@DISEASE$", "@CHEMICAL$")
  tok = tokenization.load_tokenizer(data_dir / "vocab" / filename, lowercase, extras)
  hf = hf_wordpiece(str(data_dir / "vocab" / filename), lowercase)
  hf.add_tokens([tokenizers.AddedToken(t, normalized=False) for t in extras])
  texts = ["@GENE$ variants raise @DISEASE$ risk.", "x@CHEMICAL$y @GENE$@GENE$", "@GENE", ""]
  want = _hf_ids(hf, texts)
  # First use inside a tf.data map (graph mode), then eagerly.
  in_dataset = tf.data.Dataset.from_tensor_slices(texts).batch(3).map(tok.tokenize_tf)
  assert [sum(w, []) for batch in in_dataset for w in batch.to_list()] == want
  assert tok.encode(texts) == want
  assert _graph_ids(tok, texts) == want
  assert tok.vocab_size == len(ours.vocab) + 3 == hf.get_vocab_size()
  assert tok.convert_tokens_to_ids(list(extras)) == [len(ours.vocab) + i for i in range(3)]
  ids, spans = tok.encode_with_offsets(texts[:1])[0]
  assert ids[0] == len(ours.vocab) and spans[0] == (0, 6)
  words = tok.tokenize_tf(tf.constant(texts[:1])).to_list()[0]
  assert words[0] == [len(ours.vocab)]  # one word of one piece


def test_special_ids_decode_and_conversions(setup):
  ours, hf, slow, _ = setup
  for name in ("pad", "unk", "cls", "sep", "mask"):
    assert getattr(ours, f"{name}_id") == hf.token_to_id(f"[{name.upper()}]")
  assert ours.vocab_size == hf.get_vocab_size() == len(ours.vocab)
  text = "The α-synuclein (SNCA) gene, 2'-deoxy-5-fluorouridine ≥ 5 µM."
  ids = ours.encode([text])[0]
  assert ours.convert_ids_to_tokens(ids) == slow.convert_ids_to_tokens(ids)
  assert ours.convert_tokens_to_ids(ours.convert_ids_to_tokens(ids)) == ids
  assert ours.decode(ids + [ours.pad_id] * 3) == slow.decode(
      ids, clean_up_tokenization_spaces=False)


def test_tokenize_tf_inside_dataset_map(setup):
  ours, _, _, _ = setup
  texts = list(CORNER_CASES.values())
  ds = tf.data.Dataset.from_tensor_slices(texts).batch(4).map(ours.tokenize_tf)
  got = [words for batch in ds for words in batch.to_list()]
  assert got == ours.tokenize_tf(tf.constant(texts)).to_list()
  assert [sum(w, []) for w in got] == ours.encode(texts)
  # Word structure: one row per basic-tokenizer word (here 3 words: "a", "-", "bc").
  scalar = ours.tokenize_tf(tf.constant("a-bc"))
  assert scalar.to_list() == [ours.encode([w])[0] for w in ("a", "-", "bc")]


def test_read_text_lines_invalid_utf8(testdata, setup):
  ours, _, _, _ = setup
  path = testdata / "tok_invalid_utf8.txt"
  assert path.read_bytes().count(b"\n") == 3
  with pytest.raises(InputError, match=r"tok_invalid_utf8.txt:2: invalid UTF-8"):
    list(tokenization.read_text_lines(path))
  lines = list(tokenization.read_text_lines(path, errors="replace"))
  assert lines[0] == "first line" and "\ufffd" in lines[1] and len(lines) == 3
  # The replacement char is dropped like BERT's _clean_text drops it.
  assert ours.encode([lines[1]]) == ours.encode([lines[1].replace("\ufffd", "")])
  # The in-graph face reads raw bytes: invalid UTF-8 is replaced, then dropped, too.
  raw_lines = path.read_bytes().split(b"\n")[:3]
  assert _graph_ids(ours, raw_lines) == ours.encode(lines)


def test_a_byte_order_mark_never_reaches_the_vocab(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_bytes("\ufeff[PAD]\n[UNK]\nthe\ufeff\n".encode("utf-8"))
  # Only the file's first character is a BOM; one inside a later line is kept as text.
  assert tokenization.read_vocab(path) == ["[PAD]", "[UNK]", "the\ufeff"]
