"""Tokenizer: deterministic training, EOS, vocab checks against the config."""

import hashlib

import pytest
import sentencepiece as spm

from mobilellm_jax.configs import get_config
from mobilellm_jax.data import DataError, load_tokenizer
from mobilellm_jax.data.testing import build_tiny_corpus, synthetic_documents
from mobilellm_jax.data.tokenizer import Tokenizer, train_tokenizer


def _texts():
  return [d.text for d in synthetic_documents(num_docs=20, words_per_doc=150)]


def test_training_is_deterministic_to_the_byte(tmp_path):
  first = train_tokenizer(_texts(), 520, tmp_path / "a.model")
  second = train_tokenizer(_texts(), 520, tmp_path / "b.model")
  assert first.read_bytes() == second.read_bytes()
  different = train_tokenizer(_texts()[1:], 520, tmp_path / "c.model")
  assert different.read_bytes() != first.read_bytes()
  tokenizer = Tokenizer(first)
  assert tokenizer.sha256 == hashlib.sha256(first.read_bytes()).hexdigest()
  assert tokenizer.vocab_size == 520 and tokenizer.eos_id == 2


def test_encode_decode_round_trip_keeps_newlines(tmp_path):
  tokenizer = Tokenizer(train_tokenizer(_texts(), 520, tmp_path / "t.model"))
  text = "The water was near.\nA boy came home!"
  ids = tokenizer.encode(text)
  assert tokenizer.decode(ids) == text
  assert tokenizer.eos_id not in ids
  assert tokenizer.encode_batch([text, text]) == [ids, ids]


def test_no_text_becomes_unk_and_every_text_decodes_back(tmp_path):
  # Digits, brackets and currency never occur in the training text; 'é', '—', CJK and the
  # ligature are outside ASCII (the ligature is what NFKC normalisation would have rewritten).
  tokenizer = Tokenizer(train_tokenizer(_texts(), 520, tmp_path / "t.model"))
  assert len(tokenizer.byte_piece_ids) == 256
  texts = ["Question: 12 + 3.5 = $15.50 (100%) / Q? [a] {b} <c> ~`^|\\@#&*_",
           "naïve café — “quoted” 日本語 ﬁ ① 🙂", "  two leading spaces, two trailing  ",
           "tab\there\n\nblank line above\n", "2024-12-03 10:45"]
  for text in texts:
    ids = tokenizer.encode(text)
    assert tokenizer.unk_id not in ids, text
    assert tokenizer.decode(ids) == text
  digits = tokenizer.encode("1234567890")
  assert [tokenizer.decode([i]) for i in digits][-10:] == list("1234567890")  # one piece per digit
  assert not set(digits) & tokenizer.byte_piece_ids  # digits are pieces, not bytes


def test_a_vocab_too_small_for_byte_fallback_is_a_data_error(tmp_path):
  with pytest.raises(DataError, match="too small: byte fallback alone takes 256 pieces"):
    train_tokenizer(_texts(), 300, tmp_path / "t.model")


def test_too_big_a_vocab_for_the_text_is_a_data_error(tmp_path):
  with pytest.raises(DataError, match="smaller --vocab_size"):
    train_tokenizer(["a tiny text"], 5000, tmp_path / "t.model")


def test_load_tokenizer_checks_vocab_against_config(tmp_path):
  build_tiny_corpus(tmp_path, vocab_size=512)
  config = get_config("smoke")
  config.data.data_dir = str(tmp_path)
  tokenizer = load_tokenizer(config)
  assert tokenizer.vocab_size == config.model.vocab_size == 512
  assert tokenizer.path.endswith("mobilellm_corpus/tokenizer_v512_r2.model")

  config.data.tokenizer_path = tokenizer.path
  config.model.vocab_size = 1024
  with pytest.raises(DataError, match="512 pieces but model.vocab_size=1024"):
    load_tokenizer(config)

  config.data.tokenizer_path = ""
  with pytest.raises(DataError, match="prepare --data_dir .* --vocab_size 1024"):
    load_tokenizer(config)  # No 1024-piece corpus tokenizer: says how to make one.

  config.data.tokenizer_path = str(tmp_path / "nope.model")
  with pytest.raises(DataError, match="does not exist"):
    load_tokenizer(config)


def test_a_tokenizer_without_eos_is_rejected(tmp_path):
  spm.SentencePieceTrainer.train(sentence_iterator=iter(_texts()), model_prefix=str(tmp_path / "x"),
                                 vocab_size=200, eos_id=-1, minloglevel=2)
  with pytest.raises(DataError, match="no EOS"):
    Tokenizer(tmp_path / "x.model")


def test_audit_finds_unk_and_tied_choices_of_a_lossy_tokenizer(tmp_path):
  from mobilellm_jax.evaluation.encoding import audit_questions  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.evaluation.tasks import Question  # pylint: disable=import-outside-toplevel
  questions = [Question(0, ("Question: how many?",) * 2, (" 12", " 34"), 0),
               Question(1, ("The water was near.",) * 2, (" A boy", " a boy"), 1)]
  lossy = tmp_path / "lossy.model"  # what the corpus tokenizer was: no byte fallback
  spm.SentencePieceTrainer.train(sentence_iterator=iter(_texts()), model_prefix=str(lossy)[:-6],
                                 vocab_size=200, model_type="bpe", byte_fallback=False,
                                 character_coverage=0.9995, minloglevel=2)
  assert audit_questions(Tokenizer(lossy), questions) == dict(
      requests=4, requests_with_unk=2, tied_questions=1)
  ours = Tokenizer(train_tokenizer(_texts(), 520, tmp_path / "t.model"))
  assert audit_questions(ours, questions) == dict(requests=4, requests_with_unk=0,
                                                  tied_questions=0)
