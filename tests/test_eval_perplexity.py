"""Perplexity and bits-per-byte on the corpus splits and on raw text."""

import functools
import json
import math

import jax
import numpy as np
import pytest
from flax import nnx

from mobilellm_jax.configs import get_config
from mobilellm_jax.data import load_tokenizer, make_eval_iterator
from mobilellm_jax.data.testing import build_tiny_corpus
from mobilellm_jax.evaluation import perplexity, perplexity_of_file, perplexity_of_text
from mobilellm_jax.evaluation import bytecount
from mobilellm_jax.model import build_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("ppl")
  build_tiny_corpus(root)
  config = get_config("smoke")
  config.data.data_dir = str(root)
  config.data.seq_len, config.train.batch_size = 32, 4  # fixed here: the smoke preset may change
  config.model.init_std = 0.1
  return config, load_tokenizer(config), build_model(config.model, seed=3), root


@functools.partial(jax.jit, static_argnums=0)
def _logits(graphdef, state, tokens_BxL):
  return nnx.merge(graphdef, state)(tokens_BxL)


def _nll_per_token(model, inputs_BxL, targets_BxL):
  """-log p of each target, float64 numpy, from the plain model (no evaluation code)."""
  logits = np.asarray(_logits(*nnx.split(model), np.asarray(inputs_BxL)), np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  return -np.take_along_axis(logp, np.asarray(targets_BxL)[..., None], -1)[..., 0]


@pytest.mark.slow
def test_perplexity_equals_the_mean_loss_of_the_eval_batches(setup):
  config, _, model, _ = setup
  result = perplexity(model, config, split="validation", max_batches=3)
  batches = list(make_eval_iterator(config, "validation", max_batches=3))
  nll = np.concatenate([_nll_per_token(model, b["inputs"], b["targets"]).ravel()
                        for b in batches])
  assert result["tokens"] == nll.size == 3 * config.train.batch_size * config.data.seq_len
  assert result["loss"] == pytest.approx(nll.mean(), abs=1e-5)
  assert result["perplexity"] == pytest.approx(math.exp(nll.mean()), rel=1e-5)
  assert result["bits_per_byte"] == pytest.approx(nll.sum() / math.log(2) / result["bytes"])
  assert result["bytes_exact"]


def test_corpus_bytes_are_exact_and_agree_with_decoding(setup):
  config, tokenizer, model, root = setup
  info = json.loads((root / "mobilellm_corpus" / "corpus_info.json").read_text())
  for split in ("validation", "test"):
    ids_S, bytes_S = bytecount.corpus_stream_bytes(root, split, tokenizer)
    assert bytes_S.sum() == info["splits"][split]["bytes"]  # every byte of the split's text
    # The decoded method gets the same count on this ASCII corpus (no <unk> pieces); the stream's
    # first token is never a target, so both leave it out.
    decoded = bytecount.DecodedBytes(tokenizer)(ids_S[None, :-1], ids_S[None, 1:])
    assert decoded == bytes_S[1:].sum()
  result = perplexity(model, config, split="test")
  batches = list(make_eval_iterator(config, "test"))
  targets = np.concatenate([b["targets"].ravel() for b in batches])
  ids_S, bytes_S = bytecount.corpus_stream_bytes(root, "test", tokenizer)
  assert np.array_equal(ids_S[1:1 + targets.size], targets)
  assert result["bytes"] == bytes_S[1:1 + targets.size].sum() and result["bytes_exact"]


def test_stream_bytes_fall_back_to_decoding_when_batches_leave_the_stream(setup):
  _, tokenizer, _, root = setup
  ids_S, bytes_S = bytecount.corpus_stream_bytes(root, "validation", tokenizer)
  counter = bytecount.StreamBytes(ids_S, bytes_S, bytecount.DecodedBytes(tokenizer))
  assert counter(ids_S[None, 0:8], ids_S[None, 1:9]) == bytes_S[1:9].sum() and counter.exact
  counter(ids_S[None, 20:28], ids_S[None, 21:29])  # skips ahead: not the stream's next tokens
  assert not counter.exact


@pytest.mark.parametrize("text", ["the sea", " two  spaces\nand a line", "ünïcödé ≥ 5 ﬁ",
                                  "a\r\nb\n\n"])
def test_text_token_bytes_cover_the_text_exactly(setup, text):
  _, tokenizer, _, _ = setup
  ids, sizes = bytecount.text_token_bytes(tokenizer, text)
  assert ids.tolist() == tokenizer.encode(text)
  assert sizes.sum() == len(text.encode("utf-8"))


def test_decoded_bytes_drop_the_dummy_prefix_after_eos(setup):
  _, tokenizer, _, _ = setup
  eos = tokenizer.eos_id
  first, second = tokenizer.encode("the sea"), tokenizer.encode("the end")
  stream = np.asarray([eos] + first + [eos] + second + [eos])
  counted = bytecount.DecodedBytes(tokenizer)(stream[None, :-1], stream[None, 1:])
  assert counted == len("the sea") + len("the end")


def test_perplexity_of_text_scores_every_token_once(setup, tmp_path):
  config, tokenizer, model, _ = setup
  text = ("The sea was calm and the night was long. " * 12).strip() + "\nA new line. ünï"
  ids = tokenizer.encode(text)
  seq_len = config.data.seq_len
  result = perplexity_of_text(model, tokenizer, text, seq_len, batch_size=4)
  assert result["tokens"] == len(ids) > 2 * seq_len and result["bytes"] == len(text.encode())
  stream = [tokenizer.eos_id] + ids
  windows = [np.asarray([stream[s:s + seq_len + 1]]) for s in range(0, len(ids), seq_len)]
  nll = [_nll_per_token(model, w[:, :-1], w[:, 1:]).sum() for w in windows]  # alone, last shorter
  assert result["loss"] == pytest.approx(sum(nll) / len(ids), abs=1e-5)
  assert result["bits_per_byte"] == pytest.approx(sum(nll) / math.log(2) / len(text.encode()),
                                                  rel=1e-5)
  path = tmp_path / "t.txt"
  path.write_bytes(text.encode("utf-8"))
  assert perplexity_of_file(model, tokenizer, path, seq_len, batch_size=4) == result
