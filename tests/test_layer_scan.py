"""layer_scan.scan_layers: jax.lax.scan's values and gradients, without zero-filling the stacks
of saved values."""

import re

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from mobilellm_jax.ops import layer_scan
from mobilellm_jax.configs import get_config
from mobilellm_jax.model import build_model


def _layer(x, params, consts):
  """Saves the layer's input, a computed value and both of its parameters (one used as is)."""
  scale, = consts
  h = jnp.tanh(x @ params["w"]) * scale
  return x + h * params["gain"]


def _inputs():
  keys = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(keys[0], (4, 6, 8))
  params = {"w": 0.3 * jax.random.normal(keys[1], (5, 8, 8)),
            "gain": 1.0 + 0.1 * jax.random.normal(keys[2], (5, 8))}
  consts = (1.0 + 0.1 * jax.random.normal(keys[3], (8,)),)
  return x, params, consts


def _loss_and_grads(x, params, consts, reverse):
  probe = jnp.linspace(-1.0, 1.0, x.size).reshape(x.shape)
  loss = lambda x, p: jnp.sum(probe * layer_scan.scan_layers(_layer, x, p, consts, reverse=reverse))
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, params)


@pytest.mark.slow
@pytest.mark.parametrize("reverse", [False, True])
def test_values_and_gradients_match_jax_scan(reverse, monkeypatch):
  x, params, consts = _inputs()
  ours = _loss_and_grads(x, params, consts, reverse)
  monkeypatch.setattr(layer_scan, "_unwritten_stacks_available", lambda: False)
  reference = _loss_and_grads(x, params, consts, reverse)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
    assert jnp.allclose(a, b, rtol=1e-6, atol=1e-6)
  # Reversed order is a different function: the check above would notice a wrong order.
  other = _loss_and_grads(x, params, consts, not reverse)
  assert not jnp.allclose(ours[0], other[0])


def _filled_stacks(monkeypatch, unwritten: bool):
  """Zero-filled [layers, batch, ...] buffers and unwritten stacks in a scanned model's
  compiled gradient."""
  monkeypatch.setattr(layer_scan, "_unwritten_stacks_available", lambda: unwritten)
  config = get_config("smoke")
  config.model.update(num_layers=5, unroll_max_depth=0)
  graphdef, params = nnx.split(build_model(config.model))
  tokens = jnp.zeros((3, 16), jnp.int32)
  loss = lambda p: jnp.sum(nnx.merge(graphdef, p)(tokens))
  text = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
  # A zero fill of a stack: a broadcast of a constant to [5 layers, 3 rows, ...].
  fills = re.findall(r"= f32\[5,3,[\d,]*\][^=]*fusion\(%constant[\w.]*\), kind=kLoop", text)
  return len(fills), text.count('custom_call_target="mobilellm_uninitialised"')


@pytest.mark.slow
@pytest.mark.hlo_text
def test_stacks_of_saved_activations_are_not_zero_filled(monkeypatch):
  fills, unwritten = _filled_stacks(monkeypatch, unwritten=True)
  assert fills == 0 and unwritten >= 5
  fills, unwritten = _filled_stacks(monkeypatch, unwritten=False)  # jax.lax.scan fills them
  assert fills >= 5 and unwritten == 0
