"""The fast decoder (model/decoder.py) against the plain reference (model/reference.py), on the
same parameters: logits equal within 1e-5 for every sharing schedule, FFN type, head layout,
tied/untied head, scan on/off and attention implementation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mobilellm_jax.configs import get_config
from mobilellm_jax.model import build_model
from mobilellm_jax.model import reference

TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 512, size=(2, 12)))
TOLERANCE = 1e-5


def _config(**overrides):
  m = get_config("smoke").model
  m.update(dict(param_dtype="float32", compute_dtype="float32") | overrides)
  return m


def _model_and_params(cfg, seed=0):
  """The fast model with its norm scales moved off 1 (so a mishandled scale shows), and the same
  parameters as a plain pytree."""
  model = build_model(cfg, seed=seed)
  graphdef, state = nnx.split(model)
  pure = nnx.to_pure_dict(state)
  key = iter(jax.random.split(jax.random.key(seed + 1), 64))

  def perturb(path, w):
    if path[-1].key == "scale":
      return w * (1.0 + 0.2 * jax.random.normal(next(key), w.shape, w.dtype))
    return w

  pure = jax.tree_util.tree_map_with_path(perturb, pure)
  nnx.replace_by_pure_dict(state, pure)
  return nnx.merge(graphdef, state), pure


def _max_diff(cfg_fast, cfg_ref=None):
  model, params = _model_and_params(cfg_fast)
  fast = model(TOKENS)
  ref = reference.decoder(params, TOKENS, cfg_ref or cfg_fast)
  assert fast.shape == ref.shape == (*TOKENS.shape, cfg_fast.vocab_size)
  return float(jnp.max(jnp.abs(fast - ref))), float(jnp.max(jnp.abs(ref)))


VARIANTS = [
    dict(),  # smoke: GQA 4 heads / 2 kv heads, swiglu, tied, scanned
    dict(tie_embeddings=False),
    dict(ffn_type="relu"),
    dict(ffn_type="relu", tie_embeddings=False, scan_layers=False),
    dict(num_kv_heads=4),  # plain multi-head
    dict(num_kv_heads=1),  # multi-query
    dict(scan_layers=False),
    dict(attention="xla"),
    dict(attention="blocked", attention_block=4),
    dict(num_layers=3, layer_sharing="immediate", share_repeats=2),
    dict(num_layers=3, layer_sharing="immediate", share_repeats=3, scan_layers=False),
    dict(num_layers=3, layer_sharing="repeat_all", share_repeats=2),
    dict(num_layers=3, layer_sharing="repeat_all", share_repeats=3, scan_layers=False),
    dict(num_layers=3, layer_sharing="reverse", share_repeats=2),
    dict(num_layers=3, layer_sharing="reverse", share_repeats=3),
    dict(num_layers=3, layer_sharing="reverse", share_repeats=2, scan_layers=False),
    dict(num_layers=3, layer_sharing="reverse", share_repeats=3, ffn_type="relu",
         tie_embeddings=False, num_kv_heads=1),
]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(
    f"{k}={v}" for k, v in o.items()) or "smoke")
def test_fast_model_matches_reference(overrides):
  diff, scale = _max_diff(_config(**overrides))
  assert scale > 1e-2, "logits too small for the comparison to mean anything"
  assert diff <= TOLERANCE, f"max |fast - reference| = {diff:.3g}"


@pytest.mark.parametrize("fast_schedule,ref_schedule", [
    (("reverse", 2), ("immediate", 2)),
    (("reverse", 2), ("repeat_all", 2)),
    (("repeat_all", 3), ("immediate", 3)),
])
def test_wrong_schedule_is_caught(fast_schedule, ref_schedule):
  """Not vacuous: the reference run with another schedule than the fast model's disagrees."""
  fast_cfg = _config(num_layers=3, layer_sharing=fast_schedule[0], share_repeats=fast_schedule[1])
  ref_cfg = _config(num_layers=3, layer_sharing=ref_schedule[0], share_repeats=ref_schedule[1])
  diff, _ = _max_diff(fast_cfg, ref_cfg)
  assert diff > 100 * TOLERANCE, f"schedules {fast_schedule} and {ref_schedule} gave {diff:.3g}"


def test_wrong_head_grouping_is_caught(monkeypatch):
  """Not vacuous for GQA either: kv head h % K (interleaved) instead of h // (H/K) disagrees."""
  def interleaved(x_LxKxE, groups):  # [k0, k1, k0, k1] instead of [k0, k0, k1, k1]
    return jnp.tile(x_LxKxE, (1, groups, 1))

  monkeypatch.setattr(reference, "repeat_kv", interleaved)
  diff, _ = _max_diff(_config())
  assert diff > 100 * TOLERANCE, f"interleaved kv heads gave {diff:.3g}"
