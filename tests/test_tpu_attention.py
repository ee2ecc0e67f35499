"""The 'pallas_tpu' attention (splash attention, tpu_attention.py): the kernel in Pallas's
interpret mode against the plain formula, values and gradients, alone and under shard_map on
the fake CPU mesh; 'auto' picks it on TPU only; the smoke model's train step with it compiles for
a TPU slice from this host."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding

from mobilellm_jax.accelerators import aot, chips, fit_search
from mobilellm_jax.ops import attention, tpu_attention
from mobilellm_jax.training import sharding, target
from mobilellm_jax.configs import ConfigError, get_config, validate_platform


def _inputs(batch, length, heads, kv_heads, head_dim, dtype=jnp.float32, seed=0):
  keys = jax.random.split(jax.random.key(seed), 4)
  q = jax.random.normal(keys[0], (batch, length, heads, head_dim), jnp.float32).astype(dtype)
  k = jax.random.normal(keys[1], (batch, length, kv_heads, head_dim), jnp.float32).astype(dtype)
  v = jax.random.normal(keys[2], (batch, length, kv_heads, head_dim), jnp.float32).astype(dtype)
  weights = jax.random.normal(keys[3], (batch, length, heads, head_dim), jnp.float32)
  return q, k, v, weights


def plain_attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, *, sees_ahead=0, grouping="contiguous"):
  """softmax(q k^T / sqrt(E) + mask) v in float32 with K/V repeated per query head. Query head h
  uses kv head h // G ('contiguous', the model's grouping) or h % K ('interleaved'); each query
  sees the keys up to `sees_ahead` positions after itself (0: causal)."""
  L, H, E = q_BxLxHxE.shape[1:]
  K = k_BxLxKxE.shape[2]
  kv_of_head = jnp.arange(H) // (H // K) if grouping == "contiguous" else jnp.arange(H) % K
  k_BxLxHxE = k_BxLxKxE[:, :, kv_of_head].astype(jnp.float32)
  v_BxLxHxE = v_BxLxKxE[:, :, kv_of_head].astype(jnp.float32)
  s_BxHxLxL = jnp.einsum("bqhe,bshe->bhqs", q_BxLxHxE.astype(jnp.float32), k_BxLxHxE) * E ** -0.5
  visible_LxL = jnp.arange(L)[None, :] <= jnp.arange(L)[:, None] + sees_ahead
  p_BxHxLxL = jax.nn.softmax(jnp.where(visible_LxL, s_BxHxLxL, -jnp.inf), axis=-1)
  return jnp.einsum("bhqs,bshe->bqhe", p_BxHxLxL, v_BxLxHxE)


def _out_and_grads(fn, q, k, v, weights):
  """fn(q, k, v) and the gradients of sum(weights * it), in one compile."""
  def both(q, k, v):
    out, vjp = jax.vjp(fn, q, k, v)
    return out, vjp(weights.astype(out.dtype))
  return jax.jit(both)(q, k, v)


def _max_rel_err(a, b):
  return max(float(jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32))) /
                   jnp.max(jnp.abs(y.astype(jnp.float32))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("length,heads,kv_heads,head_dim,tile,dtype", [
    (256, 4, 2, 64, 128, jnp.float32),  # GQA, 2 x 2 tiles, the paper's head_dim
    (200, 6, 2, 16, 128, jnp.float32),  # 3 query heads per kv head; padded to 2 tiles
    (512, 4, 2, 64, 256, jnp.bfloat16),  # bfloat16, larger tiles
])
@pytest.mark.slow
def test_splash_attention_matches_the_plain_formula_and_not_a_wrong_one(
    length, heads, kv_heads, head_dim, tile, dtype):
  """Values and gradients match; a reference whose mask sees one token ahead, or whose query
  heads take their kv head interleaved, differs far beyond the tolerance, so a kernel with
  either mistake would fail here."""
  q, k, v, weights = _inputs(1, length, heads, kv_heads, head_dim, dtype)
  ours = _out_and_grads(
      lambda q, k, v: tpu_attention.splash_attention(q, k, v, tile=tile), q, k, v, weights)
  reference = _out_and_grads(plain_attention, q, k, v, weights)
  tolerance = 1e-5 if dtype == jnp.float32 else 2e-2
  assert _max_rel_err(ours, reference) < tolerance
  for wrong in (dict(sees_ahead=1), dict(grouping="interleaved")):
    assert _max_rel_err([ours[0]], [plain_attention(q, k, v, **wrong)]) > 20 * tolerance, wrong


@pytest.mark.parametrize("mesh_shape,kv_heads", [((2, 1, 2), 2), ((1, 2, 2), 1)],
                         ids=["data2xtensor2-heads-split", "fsdp2xtensor2-mqa-heads-whole"])
@pytest.mark.slow
def test_under_a_mesh_each_device_runs_its_rows_and_heads(mesh_shape, kv_heads):
  """shard_map splits the batch over data x fsdp and the heads over tensor when it divides the
  kv heads (else every tensor device runs all heads), and the numbers stay the formula's."""
  q, k, v, weights = _inputs(4, 128, 4, kv_heads, 32)
  expected = _out_and_grads(plain_attention, q, k, v, weights)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:4]).reshape(mesh_shape), sharding.MESH_AXES,
                           axis_types=(AxisType.Auto,) * 3)
  spec = sharding.logical_to_spec(("batch", None, "kv_heads", None), k.shape, mesh)
  assert spec[2] == ("tensor" if kv_heads % 2 == 0 else None)
  placed = [jax.device_put(x, NamedSharding(mesh, spec)) for x in (q, k, v)]
  with target.compiling_for(mesh):
    assert tpu_attention._partition_spec(k.shape) == spec
    sharded = _out_and_grads(tpu_attention.splash_attention, *placed, weights)
  assert _max_rel_err(sharded, expected) < 1e-5


def test_the_backward_pass_keeps_its_residuals_sequence_major():
  """What the VJP saves is q, k, v and the output as they came ([B, L, heads, E]) and a float32
  log-sum-exp: no heads-major copy, which a TPU would pad from head_dim 64 to 128 lanes. (splash's
  own VJP saves [B, H, L, E] q and output here: this fails for it.)"""
  q, k, v, _ = _inputs(2, 256, 4, 2, 64, jnp.bfloat16)
  _, backward = jax.vjp(lambda q, k, v: tpu_attention.splash_attention(q, k, v, tile=128), q, k, v)
  saved = sorted((x.shape, str(x.dtype)) for x in jax.tree.leaves(backward)
                 if hasattr(x, "shape") and x.ndim >= 3)
  assert saved == sorted([(q.shape, "bfloat16"), (q.shape, "bfloat16"), (k.shape, "bfloat16"),
                          (v.shape, "bfloat16"), ((2, 4, 256), "float32")])


def test_auto_picks_pallas_tpu_on_tpu_only():
  for dtype, head_dim in ((jnp.bfloat16, 64), (jnp.float32, 64), (jnp.bfloat16, 16)):
    assert attention.resolve("auto", dtype, head_dim, platform="tpu") == "pallas_tpu"
  assert attention.resolve("auto", jnp.bfloat16, 64, platform="gpu") == "cudnn"
  assert attention.resolve("auto", jnp.bfloat16, 64, platform="cpu") == "blocked"
  with pytest.raises(ValueError, match="'pallas_tpu' cannot run: it needs a TPU; the program "
                     "is compiled for 'cpu' .use 'auto' or 'blocked'"):
    attention.resolve("pallas_tpu", jnp.bfloat16, 64, platform="cpu")
  config = get_config("smoke")
  config.model.attention = "pallas_tpu"
  validate_platform(config, "tpu")
  with pytest.raises(ConfigError, match="config.model.attention: 'pallas_tpu' cannot run"):
    validate_platform(config, "cpu")


def test_tiles_are_whole_lanes_and_shrink_to_short_sequences():
  assert tpu_attention.tile_for(2048) == 512
  assert tpu_attention.tile_for(200) == 256 and tpu_attention.tile_for(32) == 128
  assert tpu_attention.tile_for(2048, 256) == 256
  with pytest.raises(ValueError, match="multiples of 128"):
    tpu_attention.tile_for(2048, 64)


@pytest.fixture(scope="module")
def v5e_2x2():
  return chips.parse("tpu:v5e:2x2")


@pytest.mark.hlo_text
@pytest.mark.slow
@pytest.mark.parametrize("mesh", [(4, 1, 1), (1, 2, 2)], ids=["data4", "fsdp2xtensor2"])
def test_the_smoke_train_step_compiles_for_a_tpu_slice_with_the_kernel(v5e_2x2, mesh):
  """'auto' resolves to the kernel on the TPU target; the compiled step calls it (a Mosaic
  custom call) and holds no [B, H, L, L] scores: at sequence 1024 (head_dim 64) its temporaries
  are a fraction of what XLA's attention needs. (At sequence 512 the TPU compiler keeps XLA's
  scores out of HBM itself, and the kernel's tiles need slightly more.)"""
  overrides = {"train.mesh_data": mesh[0], "train.mesh_fsdp": mesh[1],
               "train.mesh_tensor": mesh[2], "data.seq_len": 1024, "model.max_seq_len": 1024,
               "model.dim": 256}
  config = fit_search.with_overrides(get_config("smoke"), overrides)
  reports = aot.compile_steps(config, v5e_2x2, steps=("train",), keep_hlo=True)
  train = reports["train"]
  assert reports["layout"].attention == "pallas_tpu"
  assert train.fits and 'custom_call_target="tpu_custom_call"' in train.hlo
  assert 'custom_call_target="mobilellm_' not in train.hlo  # no CPU kernel in a TPU program
  xla = aot.compile_steps(fit_search.with_overrides(config, {"model.attention": "xla"}),
                          v5e_2x2, steps=("train",), keep_hlo=True)["train"]
  assert "tpu_custom_call" not in xla.hlo
  assert train.memory.temp < 0.5 * xla.memory.temp
