"""Logits parity with Hugging Face `LlamaForCausalLM` on the same weights (float32)."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from mobilellm_jax.configs import get_config
from mobilellm_jax.hf import hf_config_dict, load_hf_state_dict, to_hf_state_dict
from mobilellm_jax.model import build_model


def _model_config(**overrides):
  m = get_config("smoke").model
  m.update(dict(vocab_size=97, dim=64, num_layers=3, num_heads=4, num_kv_heads=2, ffn_dim=96,
                init_std=0.1) | overrides)
  return m


def _hf_logits(model, tokens):
  hf_config = transformers.LlamaConfig(**hf_config_dict(model.args), attn_implementation="eager")
  hf = transformers.LlamaForCausalLM(hf_config).eval()
  state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_hf_state_dict(model).items()}
  missing, unexpected = hf.load_state_dict(state, strict=False)
  assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
  with torch.no_grad():
    return hf(torch.from_numpy(tokens).long()).logits.numpy()


TOKENS = np.random.default_rng(0).integers(0, 97, size=(2, 24))


@pytest.mark.slow
@pytest.mark.parametrize("tie", [True, False])
def test_unshared_logits_match_hf(tie):
  model = build_model(_model_config(tie_embeddings=tie), seed=1)
  ours = np.asarray(model(jnp.asarray(TOKENS)))
  theirs = _hf_logits(model, TOKENS)
  assert np.abs(ours - theirs).max() < 1e-4
  assert np.abs(ours).max() > 0.1  # not trivially zero


@pytest.mark.parametrize("strategy,repeats", [("immediate", 2), ("repeat_all", 2), ("reverse", 2),
                                              ("reverse", 3), ("immediate", 3)])
def test_shared_logits_match_hf_with_duplicated_layers(strategy, repeats):
  model = build_model(_model_config(layer_sharing=strategy, share_repeats=repeats), seed=2)
  ours = np.asarray(model(jnp.asarray(TOKENS)))
  theirs = _hf_logits(model, TOKENS)
  assert np.abs(ours - theirs).max() < 1e-4


def test_hf_import_roundtrip():
  model = build_model(_model_config(), seed=3)
  other = build_model(_model_config(), seed=4)
  tokens = jnp.asarray(TOKENS)
  assert np.abs(np.asarray(model(tokens)) - np.asarray(other(tokens))).max() > 1e-3
  load_hf_state_dict(other, to_hf_state_dict(model))
  np.testing.assert_allclose(np.asarray(other(tokens)), np.asarray(model(tokens)), atol=1e-6)
