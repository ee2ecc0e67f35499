"""The hand-written kernels (fused C++ and blocked attention, feed-forward VJPs, fused
cross-entropy) compute the same values and gradients as the plain JAX formulas they replace."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilellm_jax.ops import attention, dense, feedforward, losses, native, norm


def _max_rel_err(a, b):
  return max(float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-30))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _random(shape, seed, scale=1.0):
  return scale * jax.random.normal(jax.random.key(seed), shape, jnp.float32)


@pytest.mark.parametrize("impl,heads,kv_heads,length,head_dim,block", [
    ("blocked", 4, 2, 64, 8, 8),  # GQA + many blocks
    ("blocked", 6, 2, 33, 8, 8),  # uneven last block
    ("blocked", 4, 4, 7, 8, 2),  # MHA
    ("fused_cpu", 4, 2, 200, 32, 0),  # GQA, 4 key tiles with an uneven last one
    ("fused_cpu", 6, 2, 9, 16, 0),  # 3 query heads per kv head, shorter than one tile
    ("fused_cpu", 2, 2, 70, 64, 0),  # MHA, head_dim 64 (the paper's)
    ("fused_cpu", 3, 1, 65, 24, 0),  # multi-query, head_dim not a power of two
])
@pytest.mark.slow
def test_attention_kernels_match_xla(impl, heads, kv_heads, length, head_dim, block):
  q = _random((2, length, heads, head_dim), 0)
  k = _random((2, length, kv_heads, head_dim), 1)
  v = _random((2, length, kv_heads, head_dim), 2)
  weights = _random((2, length, heads, head_dim), 3)

  def loss(impl):
    return lambda q, k, v: jnp.sum(weights * attention.causal_attention(
        q, k, v, impl=impl, block_size=block or 64))

  ours = jax.jit(jax.value_and_grad(loss(impl), argnums=(0, 1, 2)))(q, k, v)
  reference = jax.jit(jax.value_and_grad(loss("xla"), argnums=(0, 1, 2)))(q, k, v)
  # fused_cpu sums in another order and uses a polynomial exp (relative error ~1e-7).
  assert _max_rel_err(ours, reference) < (3e-5 if impl == "fused_cpu" else 1e-5)


@pytest.mark.parametrize("heads,kv_heads,length,head_dim", [
    (4, 2, 200, 32),  # the cpu preset's heads, 4 key tiles with an uneven last one
    (9, 3, 70, 64),  # MobileLLM-125M's heads
    (3, 3, 33, 24),  # one query head per kv head, head_dim not a power of two
])
def test_fused_qkv_attention_matches_rope_then_xla(heads, kv_heads, length, head_dim):
  """The kernel's own RoPE and qkv slicing against model.apply_rope and XLA's attention, at
  positions that do not start at 0 (as in a packed or shifted batch)."""
  from mobilellm_jax.model import apply_rope, rope_sin_cos
  B, H, K, E = 2, heads, kv_heads, head_dim
  qkv = _random((B, length, (H + 2 * K) * E), 0)
  positions = jnp.arange(length)[None] + jnp.array([[3], [40]])
  sin, cos = rope_sin_cos(positions, E, 10000.0)
  weights = _random((B, length, H, E), 1)

  def reference(qkv):
    q, k, v = jnp.split(qkv, [H * E, (H + K) * E], axis=-1)
    q = apply_rope(q.reshape(B, length, H, E), sin, cos)
    k = apply_rope(k.reshape(B, length, K, E), sin, cos)
    out = jax.nn.dot_product_attention(q, k, v.reshape(B, length, K, E), is_causal=True)
    return jnp.sum(weights * out)

  def fused(qkv):
    return jnp.sum(weights * attention.fused_cpu_qkv_attention(qkv, sin, cos, H))

  ours = jax.jit(jax.value_and_grad(fused))(qkv)
  ref = jax.jit(jax.value_and_grad(reference))(qkv)
  assert _max_rel_err(ours, ref) < 3e-5
  # Every part of qkv gets its gradient (q, k and v slices all written by the kernel).
  for part in jnp.split(ours[1], [H * E, (H + K) * E], axis=-1):
    assert float(jnp.min(jnp.max(jnp.abs(part), axis=-1))) > 0


@pytest.mark.parametrize("run", [
    jax.jit(lambda q, k, v: attention.blocked_attention(q, k, v, 3)),
    jax.jit(attention.fused_cpu_attention)])
def test_attention_kernels_are_causal(run):
  q, k, v = _random((1, 12, 2, 8), 0), _random((1, 12, 1, 8), 1), _random((1, 12, 1, 8), 2)
  out = run(q, k, v)
  # Changing the last key/value must not change any earlier position's output.
  out2 = run(q, k.at[:, -1].set(9.0), v.at[:, -1].set(-9.0))
  np.testing.assert_array_equal(out[:, :-1], out2[:, :-1])
  assert not np.allclose(out[:, -1], out2[:, -1])


def test_block_bounds_cover_the_sequence_and_cap_the_block_count():
  assert attention._block_bounds(256, 32) == [(i, i + 32) for i in range(0, 256, 32)]
  assert attention._block_bounds(33, 8) == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 33)]
  bounds = attention._block_bounds(2048, 32)  # 64 blocks of 32 would be too many
  assert len(bounds) == attention.MAX_BLOCKS and bounds[-1][1] == 2048


def test_attention_auto_resolves_on_cpu():
  assert attention.resolve("auto", jnp.float32, 32) == "fused_cpu"
  assert attention.resolve("auto", jnp.bfloat16, 32) == "blocked"  # the C++ kernel is f32 only
  assert attention.resolve("auto", jnp.float32, 12) == "blocked"  # head_dim not a multiple of 8
  assert attention.resolve("xla") == "xla"
  with pytest.raises(ValueError, match="config.model.attention: 'cudnn' cannot run: it needs a GPU"):
    attention.resolve("cudnn", jnp.bfloat16, 64)
  with pytest.raises(ValueError, match="'fused_cpu' cannot run: it computes in float32 only"):
    attention.resolve("fused_cpu", jnp.bfloat16, 32)


def test_attention_auto_resolves_on_gpu():
  """The GPU rules, decided without a GPU: cuDNN flash attention for bf16/f16, else XLA's."""
  assert attention.resolve("auto", jnp.bfloat16, 64, platform="gpu") == "cudnn"
  assert attention.resolve("auto", jnp.float16, 128, platform="gpu") == "cudnn"
  assert attention.resolve("auto", jnp.float32, 64, platform="gpu") == "xla"
  assert attention.resolve("auto", jnp.bfloat16, 256, platform="gpu") == "xla"
  assert attention.resolve("auto", jnp.bfloat16, 64, platform="tpu") == "pallas_tpu"
  with pytest.raises(ValueError, match="'cudnn' cannot run: it computes in bfloat16/float16 only"):
    attention.resolve("cudnn", jnp.float32, 64, platform="gpu")
  with pytest.raises(ValueError, match="'fused_cpu' cannot run: it runs on CPU only"):
    attention.resolve("fused_cpu", jnp.float32, 64, platform="gpu")


@pytest.mark.parametrize("x_shape,w_shape,num_in", [
    ((3, 5, 8), (8, 4, 6), 1), ((3, 5, 4, 6), (4, 6, 8), 2)])  # q/k/v and output projections
def test_dense_vjp_matches_einsum(x_shape, w_shape, num_in):
  x, w = _random(x_shape, 0), _random(w_shape, 1)
  probe = _random(x_shape[:len(x_shape) - num_in] + w_shape[num_in:], 2)
  axes = "abcdefgh"
  lead, contracted = axes[:len(x_shape) - num_in], axes[len(x_shape) - num_in:len(x_shape)]
  spec = f"{lead}{contracted},{contracted}{'xyz'[:len(w_shape) - num_in]}->{lead}{'xyz'[:len(w_shape) - num_in]}"
  ours = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(probe * dense.dense(x, w, num_in)),
                                    argnums=(0, 1)))(x, w)
  ref = jax.value_and_grad(lambda x, w: jnp.sum(probe * jnp.einsum(spec, x, w)), argnums=(0, 1))(x, w)
  assert _max_rel_err(ours, ref) < 1e-5


def _swiglu_reference(x, w_gate, w_up, w_down):
  return (jax.nn.silu(x @ w_gate) * (x @ w_up)) @ w_down


def _relu_reference(x, w_up, w_down):
  return jax.nn.relu(x @ w_up) @ w_down


@pytest.mark.parametrize("kernel,reference,num_weights", [
    (feedforward.swiglu, _swiglu_reference, 3), (feedforward.relu_mlp, _relu_reference, 2)])
def test_feedforward_vjp_matches_autodiff(kernel, reference, num_weights):
  x = _random((3, 10, 16), 0)
  shapes = [(16, 40)] * (num_weights - 1) + [(40, 16)]
  weights = [_random(s, i + 1, 0.3) for i, s in enumerate(shapes)]
  probe = _random((3, 10, 16), 9)
  argnums = tuple(range(num_weights + 1))
  ours = jax.jit(jax.value_and_grad(lambda *a: jnp.sum(probe * kernel(*a)), argnums))(x, *weights)
  ref = jax.jit(jax.value_and_grad(lambda *a: jnp.sum(probe * reference(*a)), argnums))(x, *weights)
  assert _max_rel_err(ours, ref) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [4, 12])
def test_fused_cross_entropy_matches_plain(chunk):
  hidden, head = _random((3, 12, 8), 0), _random((37, 8), 1)
  targets = jax.random.randint(jax.random.key(2), (3, 12), 0, 37)

  def fused(h, w):
    return 2.5 * losses.fused_cross_entropy(h, w, targets, chunk)

  def plain(h, w):
    return 2.5 * losses.cross_entropy(jnp.einsum("bld,vd->blv", h, w), targets)

  ours = jax.jit(jax.value_and_grad(fused, argnums=(0, 1)))(hidden, head)
  ref = jax.value_and_grad(plain, argnums=(0, 1))(hidden, head)
  assert _max_rel_err(ours, ref) < 1e-5
  assert abs(float(jax.jit(fused)(hidden, head)) - float(ref[0])) < 1e-5  # the undifferentiated path


def test_chunk_length_divides_and_bounds_logits():
  assert losses.chunk_length(16, 256, 4096) == 64
  assert losses.chunk_length(2, 512, 4096) == 512
  assert losses.chunk_length(2, 512, 32000) == 64
  assert losses.chunk_length(3, 7, 10) == 7
  assert losses.chunk_length(2048, 256, 4096) == 1
  assert losses.chunk_length(8, 2048, 32000, losses.ACCELERATOR_CHUNK_LOGITS) == 1024
  for batch, length, vocab in [(16, 256, 4096), (5, 100, 50000), (1, 2048, 32000)]:
    c = losses.chunk_length(batch, length, vocab)
    assert length % c == 0 and (batch * c * vocab <= losses.CHUNK_LOGITS or c == 1)


def test_chunk_length_reaches_model_width():
  """Chunks grow to about `dim` tokens when the logits bound alone would make them narrower."""
  assert losses.chunk_length(2, 512, 32000, dim=576) == 256  # 512 tokens (bound alone: 128)
  assert losses.chunk_length(16, 256, 4096, dim=128) == 64  # the logits bound already allows more
  assert losses.chunk_length(1, 100, 50000, dim=576) == 100  # the whole sequence, not past it
  for batch, length, dim in [(2, 512, 576), (3, 7, 64), (5, 100, 960), (16, 256, 128)]:
    c, without = (losses.chunk_length(batch, length, 32000, dim=dim),
                  losses.chunk_length(batch, length, 32000))
    assert length % c == 0 and c >= without
    assert c == without or batch * c < dim + batch  # grown, but to no more than ~dim tokens


@pytest.mark.parametrize("shape", [(3, 5, 40), (70000,), (2, 17)])
def test_swiglu_gating_kernel_matches_xla(shape):
  """The C++ pass gives XLA's numbers: on a tail that is no multiple of 8, across several work
  items (70000 elements), and at gate values where the sigmoid saturates."""
  gate = 6.0 * _random(shape, 0)
  gate = gate.reshape(-1).at[:4].set(jnp.array([-120.0, -90.0, 90.0, 0.0])).reshape(shape)
  up, dhidden = _random(shape, 1), _random(shape, 2)
  hidden, dgate_up = feedforward.gating_grads_native(gate, up, dhidden)
  hidden_xla, dgate, dup = feedforward.gating_grads_xla(gate, up, dhidden)
  assert hidden.dtype == dgate_up.dtype == jnp.float32
  assert dgate_up.shape == (*shape[:-1], 2 * shape[-1])
  np.testing.assert_allclose(hidden, hidden_xla, rtol=2e-6, atol=1e-6)
  np.testing.assert_allclose(dgate_up, jnp.concatenate([dgate, dup], -1), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 37), (3, 20, 4099)])
def test_cross_entropy_kernel_matches_xla(shape):
  """The C++ pass gives XLA's loss and logit gradient: a vocab that is no multiple of 8, rows
  across several work items, large logits (no overflow in the softmax)."""
  logits = 8.0 * _random(shape, 0)
  logits = logits.at[0, 0, :5].set(jnp.array([90.0, -90.0, 200.0, 0.0, -300.0]))
  targets = jax.random.randint(jax.random.key(1), shape[:2], 0, shape[2])
  count = targets.size + 3  # any normaliser
  (nll, grad), (nll_xla, grad_xla) = (
      f(logits, targets, count) for f in (losses.loss_and_logit_grads_native,
                                           losses.loss_and_logit_grads_xla))
  np.testing.assert_allclose(nll, nll_xla, rtol=1e-6)
  assert grad.shape == logits.shape and grad.dtype == jnp.float32
  np.testing.assert_allclose(grad, grad_xla, rtol=1e-5, atol=1e-9)
  bad = targets.at[0, 0].set(shape[2])  # out of range: NaN loss, as XLA's gather gives
  assert np.isnan(losses.loss_and_logit_grads_native(logits, bad, count)[0])
  assert np.isnan(losses.loss_and_logit_grads_xla(logits, bad, count)[0])


def _kernel_operand_shapes(compiled_text, target):
  """Operand and result shapes of each call of `target` in compiled HLO text."""
  return [re.findall(r"[fs]32\[([\d,]*)\]", line) for line in compiled_text.splitlines()
          if f'custom_call_target="{target}"' in line]


@pytest.mark.hlo_text
@pytest.mark.parametrize("batch,local_batch", [(8, 2), (6, 6)])
def test_kernel_runs_on_each_devices_rows_of_a_sharded_batch(batch, local_batch):
  """On a mesh that splits the batch 4 ways, each device runs the kernel on its own rows (not on
  a gathered copy of the whole batch); a batch the mesh does not divide runs whole. Same numbers
  as on one device either way."""
  mesh = jax.make_mesh((4, 2), ("data", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  split_rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  logits, targets = _random((batch, 16, 100), 0, 5.0), jnp.arange(batch * 16).reshape(batch, 16) % 100

  def loss(logits, targets):
    logits = jax.lax.with_sharding_constraint(logits, split_rows)
    return losses.loss_and_logit_grads_native(logits, targets, 77)

  sharded = jax.jit(loss)
  calls = _kernel_operand_shapes(sharded.lower(logits, targets).compile().as_text(),
                                 "mobilellm_softmax_cross_entropy")
  assert len(calls) == 1 and {int(s.split(",")[0]) for s in calls[0]} == {local_batch}
  (nll, grad), (nll_one, grad_one) = sharded(logits, targets), jax.jit(
      losses.loss_and_logit_grads_native, static_argnums=2)(logits, targets, 77)
  np.testing.assert_allclose(nll, nll_one, rtol=1e-6)
  np.testing.assert_allclose(grad, grad_one, rtol=1e-6, atol=1e-9)


def test_native_build_failure_is_reported(tmp_path, monkeypatch):
  monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
  with pytest.raises(native.NativeBuildError, match=r"building .*cpu_attention\.cc, .*cpu_swiglu\.cc, .*cpu_cross_entropy\.cc, .*cpu_uninitialised\.cc failed"):
    native._build(str(tmp_path / "kernel.so"))
  assert not list(tmp_path.iterdir())  # no half-written library left behind


@pytest.mark.slow
@pytest.mark.parametrize("dtype,tolerance", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_rms_norm_vjp_matches_autodiff(dtype, tolerance):
  x, scale = _random((3, 5, 16), 0).astype(dtype), 1.0 + 0.1 * _random((16,), 1)
  probe = _random((3, 5, 16), 2)

  def plain(x, scale):
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + 1e-5) * scale
    return jnp.sum(probe * y.astype(x.dtype).astype(jnp.float32))

  ours = jax.jit(jax.value_and_grad(
      lambda x, s: jnp.sum(probe * norm.rms_norm(x, s, 1e-5).astype(jnp.float32)),
      argnums=(0, 1)))(x, scale)
  ref = jax.value_and_grad(plain, argnums=(0, 1))(x, scale)
  assert ours[1][0].dtype == dtype and ours[1][1].dtype == jnp.float32
  assert _max_rel_err(jax.tree.map(lambda a: a.astype(jnp.float32), ours),
                      jax.tree.map(lambda a: a.astype(jnp.float32), ref)) < tolerance


@pytest.mark.parametrize("dtype,tolerance", [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)])
@pytest.mark.parametrize("consumer,reference,shapes", [
    ((dense.matmul_fwd, dense.matmul_bwd), lambda x, w: x @ w, [(16, 24)]),
    ((feedforward.swiglu_fwd, feedforward.swiglu_bwd), _swiglu_reference, [(16, 40), (16, 40), (40, 16)]),
    ((feedforward.relu_fwd, feedforward.relu_bwd), _relu_reference, [(16, 40), (40, 16)])])
@pytest.mark.slow
def test_norm_fused_into_consumer_matches_autodiff(consumer, reference, shapes, dtype, tolerance):
  # The fused VJP recomputes the normalised input in the backward pass instead of saving it.
  fused = norm.rms_norm_into(*consumer)
  x, scale = _random((3, 10, 16), 0).astype(dtype), 1.0 + 0.1 * _random((16,), 1)
  weights = [_random(s, i + 2, 0.3).astype(dtype) for i, s in enumerate(shapes)]
  probe = _random((3, 10, shapes[-1][1]), 9)
  argnums = tuple(range(len(weights) + 2))

  def plain_norm(x, scale):  # float32 math, output in x's dtype (as model.RMSNorm)
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + 1e-5)
            * scale).astype(x.dtype)

  def loss(f):
    return lambda x, s, *w: jnp.sum(probe * f(x, s, *w).astype(jnp.float32))

  ours = jax.jit(jax.value_and_grad(loss(lambda x, s, *w: fused(1e-5, x, s, *w)), argnums))(
      x, scale, *weights)
  ref = jax.value_and_grad(loss(lambda x, s, *w: reference(plain_norm(x, s), *w)), argnums)(
      x, scale, *weights)
  assert [g.dtype for g in ours[1]] == [dtype, jnp.float32] + [dtype] * len(weights)
  assert _max_rel_err(jax.tree.map(lambda a: a.astype(jnp.float32), ours),
                      jax.tree.map(lambda a: a.astype(jnp.float32), ref)) < tolerance
  # Residuals: x, the reciprocal RMS and the consumer's own; no [.., 16] normalised copy of x.
  _, pullback = jax.vjp(lambda x: fused(1e-5, x, scale, *weights), x)
  saved = [leaf.shape for leaf in jax.tree.leaves(pullback)]  # the pullback closes over them
  assert saved.count(x.shape) == 1 and (3, 10, 1) in saved


def test_wide_weight_grad_matches_weight_grad():
  x, dout = _random((64, 8), 0), _random((64, 96), 1)
  expected = np.asarray(x).T @ np.asarray(dout)
  np.testing.assert_allclose(jax.jit(dense.wide_weight_grad)(x, dout), expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jax.jit(dense.weight_grad)(x, dout), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.hlo_text
def test_step_compiler_options_keep_matmuls_in_ynnpack_and_take_reductions_out():
  """train_step.compiler_options() (the trainer's jit) leaves XLA:CPU's matmuls to YNNPACK, its
  fast path, and runs reductions as XLA's own loops (YNNPACK's are slower in the scan:
  docs/performance.md)."""
  from mobilellm_jax.training import step as train_step
  x, w = _random((512, 96), 0), _random((96, 96), 1)
  text = jax.jit(lambda x, w: (jnp.sum(x * x, axis=-1), x @ w),
                 compiler_options=train_step.compiler_options()).lower(x, w).compile().as_text()
  ynn_outputs = re.findall(r"%ynn_fusion[.\d]* = (\w+\[[\d,]*\])", text)
  assert ynn_outputs == ["f32[512,96]"]  # the matmul, not the [512] reduction
