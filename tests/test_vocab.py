"""Vocabulary building: a WordPiece vocab learnt on PubMed text, and a SentencePiece model.

References: HF `tokenizers.BertWordPieceTokenizer` over the newly built vocab (parity
of both faces), BERT-base cased (pieces per word), and the `sentencepiece` library itself.
"""
import itertools

import pytest
import sentencepiece as spm
import tokenizers

from data_pipeline import tokenization, vocab
from data_pipeline._tf import tf

SLICE_DOCS = 300  # ~45k words: the smallest slice where a learnt vocab beats BERT cased


@pytest.fixture(scope="module")
def pubmed_slice(data_dir) -> list[str]:
  lines = tokenization.read_text_lines(data_dir / "pretrain" / "pubmed_abstracts.txt")
  return list(itertools.islice(lines, SLICE_DOCS))


@pytest.fixture(scope="module")
def learnt_vocab(pubmed_slice, tmp_path_factory):
  counts = vocab.count_words(pubmed_slice, lowercase=False)
  # One learning pass at a fixed piece frequency (the size search would run ~10 passes).
  pieces = vocab.learn_wordpiece_vocab(counts, vocab_size=30000, num_unused=10,
                                       min_count=2, num_iterations=2)
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  vocab.write_vocab(pieces, path)
  return path


def _pieces_per_word(tokenizer, lines):
  return sum(map(len, tokenizer.encode(lines))) / sum(len(line.split()) for line in lines)


def test_learnt_vocab_layout(learnt_vocab):
  pieces = tokenization.read_vocab(learnt_vocab)
  assert pieces[:15] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
      f"[unused{i}]" for i in range(10)]
  assert len(set(pieces)) == len(pieces) > 3000
  assert any(p.startswith("##") for p in pieces)
  tok = tokenization.load_tokenizer(learnt_vocab)
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)


def test_learnt_vocab_needs_fewer_pieces_per_word_than_bert_cased(
    learnt_vocab, pubmed_slice, data_dir):
  ours = tokenization.load_tokenizer(learnt_vocab)
  bert = tokenization.load_tokenizer(data_dir / "vocab" / "bert-base-cased-vocab.txt")
  ours_ppw, bert_ppw = _pieces_per_word(ours, pubmed_slice), _pieces_per_word(bert, pubmed_slice)
  assert ours_ppw < bert_ppw, (ours_ppw, bert_ppw)
  # Every character of the training text is covered: no [UNK] at all.
  assert all(ours.unk_id not in ids for ids in ours.encode(pubmed_slice))


def test_learnt_vocab_tokenises_like_hf_tokenizers(learnt_vocab, pubmed_slice):
  ours = tokenization.load_tokenizer(learnt_vocab)
  hf = tokenizers.BertWordPieceTokenizer(str(learnt_vocab), lowercase=False, strip_accents=False)
  # Original BERT's word-length limit (200 characters; HF's default is 100).
  hf._tokenizer.model = tokenizers.models.WordPiece(
      hf.get_vocab(), unk_token="[UNK]", max_input_chars_per_word=200)
  texts = pubmed_slice[:100] + ["unseen: Ωmega 中 ☃ x" + "y" * 120, "z" * 201]
  want = [e.ids[1:-1] for e in hf.encode_batch(texts)]
  assert ours.encode(texts) == want
  ragged = ours.tokenize_tf(tf.constant(texts))
  assert [sum(words, []) for words in ragged.to_list()] == want


def test_uncased_word_counts_use_bert_normalisation():
  counts = vocab.count_words(["Ångström ÅNGSTRÖM Tween™ x²", "TNF-β"], lowercase=True)
  assert counts == {"angstrom": 2, "tween™": 1, "x²": 1, "tnf": 1, "-": 1, "β": 1}


@pytest.fixture(scope="module")
def sp_model(pubmed_slice, tmp_path_factory):
  folder = tmp_path_factory.mktemp("sp")
  (folder / "slice.txt").write_text("\n".join(pubmed_slice[:150]) + "\n", encoding="utf-8")
  return vocab.build_vocab(str(folder / "slice.txt"), folder / "pubmed_sp.model",
                           vocab_size=800, kind="sentencepiece")


def test_sentencepiece_round_trips_through_the_tokenizer_interface(sp_model, pubmed_slice):
  tok = tokenization.load_tokenizer(sp_model, extra_tokens=("@GENE$",))
  reference = spm.SentencePieceProcessor(model_file=str(sp_model))
  assert tok.vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
  assert tok.vocab_size == reference.get_piece_size() + 1
  texts = pubmed_slice[:30] + ["α-synuclein binds @GENE$ in  cells.", ""]
  ids = tok.encode(texts)
  for text, got in zip(texts[:30], ids):
    assert got == reference.encode(text)
    assert tok.decode(got) == reference.decode(got)
    if tok.unk_id not in got:
      assert tok.decode(got) == " ".join(text.split())
  gene = tok.vocab_size - 1
  assert gene in ids[30] and ids[-1] == []
  # In-graph face: the same ids, grouped into words at the "▁" word marker.
  ragged = tok.tokenize_tf(tf.constant(texts)).to_list()
  assert [sum(words, []) for words in ragged] == ids
  in_dataset = tf.data.Dataset.from_tensor_slices(texts).batch(8).map(tok.tokenize_tf)
  assert [words for batch in in_dataset for words in batch.to_list()] == ragged
  for text, words in zip(texts[:30], ragged):
    assert len(words) == len(text.split())  # every whitespace word starts with "▁"
  # Offsets: each piece's span holds its text (without the word marker).
  for text, (piece_ids, spans) in zip(texts, tok.encode_with_offsets(texts)):
    for piece, (start, end) in zip(tok.convert_ids_to_tokens(piece_ids), spans):
      if piece not in ("[UNK]", "\u2581"):
        assert text[start:end].lstrip(" ") == piece.lstrip("\u2581"), (piece, text[start:end])
