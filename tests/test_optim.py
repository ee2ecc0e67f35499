"""The optimizer against optax's own transformations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mobilellm_jax.training import optim
from mobilellm_jax.configs import get_config


def _tree(seed, scale):
  keys = jax.random.split(jax.random.key(seed), 3)
  return {"w": scale * jax.random.normal(keys[0], (64, 32)),
          "blocks": {"scale": scale * jax.random.normal(keys[1], (4, 32)),
                     "w": scale * jax.random.normal(keys[2], (4, 32, 16))}}


@pytest.mark.slow
@pytest.mark.parametrize("scale, clipped", [(0.01, False), (10.0, True)])
def test_clip_matches_optax(scale, clipped):
  grads = _tree(0, scale)
  assert (float(optax.tree.norm(grads)) > 1.0) == clipped
  ours, _ = optim.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
  ref, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
  for a, b, g in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), jax.tree.leaves(grads)):
    if clipped:
      np.testing.assert_allclose(a, b, rtol=2e-6, atol=0)
      assert not np.allclose(a, g)
    else:
      np.testing.assert_array_equal(a, b)  # below the threshold: passed through exactly
  assert float(optax.tree.norm(ours)) == pytest.approx(min(1.0, float(optax.tree.norm(grads))),
                                                       rel=1e-5)


@pytest.mark.slow
def test_optimizer_steps_match_optax_clip_and_adamw():
  o = get_config("cpu").optim
  ours = optim.make_optimizer(o, 100)
  ref = optax.chain(optax.clip_by_global_norm(o.grad_clip),
                    optax.adamw(optim.lr_schedule(o, 100), b1=o.b1, b2=o.b2, eps=o.eps,
                                weight_decay=o.weight_decay, mask=optim.decay_mask))
  params = _tree(1, 0.1)
  p_ours, s_ours, p_ref, s_ref = params, ours.init(params), params, ref.init(params)
  assert jax.tree.structure(s_ours) == jax.tree.structure(s_ref)  # checkpoints stay compatible
  for step in range(5):
    grads = _tree(10 + step, 10.0 if step % 2 else 0.01)  # clipped on odd steps only
    u, s_ours = ours.update(grads, s_ours, p_ours)
    p_ours = optax.apply_updates(p_ours, u)
    u, s_ref = ref.update(grads, s_ref, p_ref)
    p_ref = optax.apply_updates(p_ref, u)
  for a, b in zip(jax.tree.leaves(p_ours), jax.tree.leaves(p_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_global_norm_matches_optax(dtype):
  grads = jax.tree.map(lambda x: x.astype(dtype), _tree(2, 3.0))
  exact = optax.tree.norm(jax.tree.map(lambda x: x.astype(jnp.float32), grads))
  assert float(optim.global_norm(grads)) == pytest.approx(float(exact), rel=1e-5)


@pytest.mark.hlo_text
def test_global_norm_of_sharded_leaves_gathers_nothing():
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))  # as the trainer
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data"))
  grads = {"w": jax.device_put(jax.random.normal(jax.random.key(3), (6, 64, 16)), sharding)}
  norm = jax.jit(optim.global_norm)
  assert float(norm(grads)) == pytest.approx(float(optax.tree.norm(grads)), rel=1e-6)
  assert "all-gather" not in norm.lower(grads).compile().as_text()
