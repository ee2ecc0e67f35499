"""Causal grouped-query attention kernels, chosen by `model.attention`.

- 'fused_cpu': a C++ kernel for XLA:CPU (native/cpu_attention.cc, through the XLA FFI), float32
  only: each (batch, kv head) keeps its score tiles in cache and fuses the softmax, forward and
  backward; faster than 'blocked' fwd+bwd at the cpu preset (bench/attention_kernel.py). Built
  with the system C++ compiler on first use. The model calls it as `fused_cpu_qkv_attention`,
  on the fused q/k/v projection with RoPE done in the kernel.
- 'blocked': pure JAX, flash-attention style. Queries are split into blocks and each block only
  scores the keys at or before its end, so the masked upper triangle is mostly never computed
  (4 blocks of 64 at sequence 256: 62.5% of the full score matrix). The backward pass is a custom VJP
  that keeps only the output and the per-row log-sum-exp and recomputes the probabilities block by
  block, instead of saving [B, H, L, L] probabilities per layer (which a scan over layers must stack
  and copy). The CPU choice when 'fused_cpu' cannot run (no compiler, bfloat16).
- 'xla': `jax.nn.dot_product_attention` (XLA's reference lowering).
- 'cudnn': `jax.nn.dot_product_attention(implementation='cudnn')`, GPU flash attention
  (bfloat16/float16, head_dim a multiple of 8 up to 128).
- 'pallas_tpu': splash attention, JAX's Pallas flash-attention kernel for TPU (tpu_attention.py):
  no [L, L] scores in HBM, K/V read per group of query heads, run under shard_map over the batch
  (and heads) axes. What it and the others need per chip at the paper's recipe:
  docs/paper_fit.md.
- 'auto': the first kernel of AUTO_PREFERENCE[platform] that can run these inputs, the platform
  being the compile target's (training/target.py): on CPU 'fused_cpu' where it can run (float32,
  head_dim a multiple of 8, a C++ compiler), else 'blocked'; on GPU 'cudnn' where it can run, else 'xla'
  (which materialises [B, H, L, L] scores: at sequence 2048 that is gigabytes per layer); on
  TPU 'pallas_tpu'. A new kernel is an entry in KERNELS, one in PROBLEMS saying what it cannot
  run, and a place in AUTO_PREFERENCE (and in configs/validation.ATTENTION_IMPLEMENTATIONS).

Shapes: B batch, L sequence, H query heads, K kv heads, G = H/K, E head_dim, Q a query block.
"""

import functools

import jax
import jax.numpy as jnp

from mobilellm_jax.ops import native, tpu_attention
from mobilellm_jax.training import target


def _fused_cpu_problem(dtype, head_dim: int, platform: str):
  """Why 'fused_cpu' cannot run these inputs on `platform`, or None."""
  if platform != "cpu":
    return f"it runs on CPU only; the program is compiled for {platform!r}"
  if jnp.dtype(dtype) != jnp.float32:
    return f"it computes in float32 only, not {jnp.dtype(dtype).name}"
  if head_dim % 8:
    return f"head_dim must be a multiple of 8, not {head_dim}"
  return native.build_error()


def _cudnn_problem(dtype, head_dim: int, platform: str):
  """Why 'cudnn' cannot run these inputs on `platform`, or None."""
  if platform != "gpu":
    return f"it needs a GPU; the program is compiled for {platform!r}"
  if jnp.dtype(dtype) not in (jnp.bfloat16, jnp.float16):
    return f"it computes in bfloat16/float16 only, not {jnp.dtype(dtype).name}"
  if head_dim % 8 or head_dim > 128:
    return f"head_dim must be a multiple of 8 up to 128, not {head_dim}"
  return None


def _pallas_tpu_problem(dtype, head_dim: int, platform: str):
  """Why 'pallas_tpu' cannot run these inputs on `platform`, or None. Any sequence length runs
  (padded to whole tiles); the TPU compiler took head_dim 12 to 256 in float32 and bfloat16."""
  del dtype, head_dim
  if platform != "tpu":
    return f"it needs a TPU; the program is compiled for {platform!r}"
  return None


# Kernel -> why it cannot run (dtype, head_dim, platform), or None; kernels absent run anywhere.
PROBLEMS = {"fused_cpu": _fused_cpu_problem, "cudnn": _cudnn_problem,
            "pallas_tpu": _pallas_tpu_problem}
# What 'auto' means per platform: the first of these that can run the inputs.
AUTO_PREFERENCE = {"cpu": ("fused_cpu", "blocked"), "gpu": ("cudnn", "xla"),
                   "tpu": ("pallas_tpu", "xla")}
# Named in the error when a kernel cannot run.
FALLBACK = {"fused_cpu": "blocked", "cudnn": "xla", "pallas_tpu": "blocked"}


def _problem(impl: str, dtype, head_dim: int, platform: str):
  check = PROBLEMS.get(impl)
  return check(dtype, head_dim, platform) if check else None


def resolve(impl: str, dtype=jnp.float32, head_dim: int = 64, platform: str | None = None) -> str:
  """The concrete kernel 'auto' stands for on `platform` (default: the compile target's,
  target.platform()) and these inputs; a kernel that cannot run is refused here, at trace time,
  naming the config field."""
  platform = platform or target.platform()
  if impl != "auto":
    if problem := _problem(impl, dtype, head_dim, platform):
      raise ValueError(f"config.model.attention: {impl!r} cannot run: {problem} "
                       f"(use 'auto' or {FALLBACK.get(impl, 'xla')!r})")
    return impl
  for candidate in AUTO_PREFERENCE.get(platform, ("xla",)):
    if not _problem(candidate, dtype, head_dim, platform):
      return candidate
  return "xla"


def causal_attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, *, impl: str = "auto",
                     block_size: int = 64):
  """softmax(q k^T / sqrt(E) + causal mask) v, per query head, K/V shared by H/K heads."""
  kernel = KERNELS[resolve(impl, q_BxLxHxE.dtype, q_BxLxHxE.shape[-1])]
  return kernel(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, block_size)


def _library_attention(implementation):
  """jax.nn.dot_product_attention as a kernel of KERNELS (block_size unused)."""
  def kernel(q, k, v, block_size):
    del block_size
    return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=implementation)
  return kernel


MAX_BLOCKS = 16  # each block is its own code in the compiled step: cap them (compile time)


def _block_bounds(length: int, block_size: int):
  """[(start, end)] of the query blocks covering 0..length: `block_size` positions each (the
  last may be shorter), made longer when that would give more than MAX_BLOCKS blocks."""
  size = max(block_size, -(-length // MAX_BLOCKS))
  return [(start, min(start + size, length)) for start in range(0, length, size)]


def _scores(q_BxKxGxQxE, k_BxKxSxE, start: int, scale: float):
  """Scaled scores of one query block against keys 0..S-1, float32, and which are causal
  (query row i sits at position start + i)."""
  s = jnp.einsum("bkgqe,bkse->bkgqs", q_BxKxGxQxE, k_BxKxSxE,
                 preferred_element_type=jnp.float32) * scale
  Q, S = s.shape[-2:]
  visible_QxS = jnp.arange(S)[None, :] <= jnp.arange(start, start + Q)[:, None]
  return s, visible_QxS


def _forward(q, k, v, block_size: int):
  scale = q.shape[-1] ** -0.5
  outs, lses = [], []
  for start, end in _block_bounds(q.shape[3], block_size):
    s, visible = _scores(q[:, :, :, start:end], k[:, :, :end], start, scale)
    s = jnp.where(visible, s, -jnp.inf)
    m = jnp.max(s, axis=-1, keepdims=True)  # finite: every row sees at least itself
    p = jnp.exp(s - m)
    denom = jnp.sum(p, axis=-1, keepdims=True)
    o = jnp.einsum("bkgqs,bkse->bkgqe", p.astype(v.dtype), v[:, :, :end],
                   preferred_element_type=jnp.float32) / denom
    outs.append(o)
    lses.append((m + jnp.log(denom))[..., 0])
  return jnp.concatenate(outs, axis=3).astype(q.dtype), jnp.concatenate(lses, axis=3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def blocked_attention_heads_major(q_BxKxGxLxE, k_BxKxLxE, v_BxKxLxE, block_size: int = 64):
  """Causal GQA attention over query blocks (see the module docstring), heads-major layout:
  q [B, K, G, L, E], k and v [B, K, L, E] -> [B, K, G, L, E]."""
  return _forward(q_BxKxGxLxE, k_BxKxLxE, v_BxKxLxE, block_size)[0]


def _blocked_fwd(q, k, v, block_size):
  out, lse = _forward(q, k, v, block_size)
  return out, (q, k, v, out, lse)


def _blocked_bwd(block_size, residuals, dout_BxKxGxLxE):
  q, k, v, out, lse_BxKxGxL = residuals
  do = dout_BxKxGxLxE
  scale = q.shape[-1] ** -0.5
  # d(softmax) row term: sum_e dout * out, one number per query row.
  delta_BxKxGxL = jnp.sum(do.astype(jnp.float32) * out.astype(jnp.float32), axis=-1)
  dq_blocks, dk, dv = [], jnp.zeros(k.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32)
  for start, end in _block_bounds(q.shape[3], block_size):
    q_b, do_b = q[:, :, :, start:end], do[:, :, :, start:end]
    s, visible = _scores(q_b, k[:, :, :end], start, scale)
    p = jnp.where(visible, jnp.exp(s - lse_BxKxGxL[:, :, :, start:end, None]), 0.0)
    dv = dv.at[:, :, :end].add(jnp.einsum("bkgqs,bkgqe->bkse", p.astype(do_b.dtype), do_b,
                                          preferred_element_type=jnp.float32))
    dp = jnp.einsum("bkgqe,bkse->bkgqs", do_b, v[:, :, :end], preferred_element_type=jnp.float32)
    ds = (p * (dp - delta_BxKxGxL[:, :, :, start:end, None]) * scale).astype(q.dtype)
    dq_blocks.append(jnp.einsum("bkgqs,bkse->bkgqe", ds, k[:, :, :end],
                                preferred_element_type=jnp.float32))
    dk = dk.at[:, :, :end].add(jnp.einsum("bkgqs,bkgqe->bkse", ds, q_b,
                                          preferred_element_type=jnp.float32))
  dq = jnp.concatenate(dq_blocks, axis=3)
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


blocked_attention_heads_major.defvjp(_blocked_fwd, _blocked_bwd)


def blocked_attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, block_size: int = 64):
  """`blocked_attention_heads_major` for sequence-major [B, L, heads, E] inputs."""
  B, L, H, E = q_BxLxHxE.shape
  K = k_BxLxKxE.shape[2]
  q = q_BxLxHxE.reshape(B, L, K, H // K, E).transpose(0, 2, 3, 1, 4)
  k, v = k_BxLxKxE.transpose(0, 2, 1, 3), v_BxLxKxE.transpose(0, 2, 1, 3)
  out = blocked_attention_heads_major(q, k, v, block_size)
  return out.transpose(0, 3, 1, 2, 4).reshape(B, L, H, E)


@jax.custom_vjp
def fused_cpu_attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE):
  """Causal GQA attention by the C++ kernel (float32, sequence-major [B, L, heads, E])."""
  return _fused_cpu_fwd(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE)[0]


@native.batch_split
def _attention_fwd_call(q, k, v):
  B, L, H, _ = q.shape
  return jax.ffi.ffi_call(
      "mobilellm_attention_fwd",
      (jax.ShapeDtypeStruct(q.shape, q.dtype), jax.ShapeDtypeStruct((B, H, L), jnp.float32)))(
          q, k, v)


@native.batch_split
def _attention_bwd_call(q, k, v, out, lse, dout):
  return tuple(jax.ffi.ffi_call(
      "mobilellm_attention_bwd",
      tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in (q, k, v)))(
          q, k, v, out, lse, dout))


def _fused_cpu_fwd(q, k, v):
  native.load()
  out, lse_BxHxL = _attention_fwd_call(q, k, v)
  return out, (q, k, v, out, lse_BxHxL)


def _fused_cpu_bwd(residuals, dout):
  q, k, v, out, lse = residuals
  return tuple(_attention_bwd_call(q, k, v, out, lse, dout.astype(q.dtype)))


fused_cpu_attention.defvjp(_fused_cpu_fwd, _fused_cpu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def fused_cpu_qkv_attention(qkv_BxLxM, sin_BxLxE2, cos_BxLxE2, num_heads: int):
  """`fused_cpu_attention` straight from the fused q/k/v projection, RoPE applied in the kernel.

  qkv [B, L, (H + 2K) E] holds the H query heads, then the K key heads, then the K value heads;
  sin and cos [B, L, E/2] are the RoPE angles (rotate-half layout). The kernel reads q, k and v
  in place and rotates q and k as it gathers them, and its backward pass writes the gradient of
  qkv whole: no RoPE passes, slices or concatenation of dq, dk and dv around it. Same numbers as
  splitting qkv, applying RoPE and calling `fused_cpu_attention` (tests/test_kernels.py)."""
  return _fused_qkv_fwd(qkv_BxLxM, sin_BxLxE2, cos_BxLxE2, num_heads)[0]


@functools.partial(native.batch_split, num_static=1)
def _fused_qkv_fwd_call(num_heads, qkv, sin, cos):
  B, L, _ = qkv.shape
  E = 2 * sin.shape[-1]
  return jax.ffi.ffi_call(
      "mobilellm_fused_attention_fwd",
      (jax.ShapeDtypeStruct((B, L, num_heads, E), qkv.dtype),
       jax.ShapeDtypeStruct((B, num_heads, L), jnp.float32)))(qkv, sin, cos)


@native.batch_split
def _fused_qkv_bwd_call(qkv, sin, cos, out, lse, dout):
  return jax.ffi.ffi_call(
      "mobilellm_fused_attention_bwd", jax.ShapeDtypeStruct(qkv.shape, qkv.dtype))(
          qkv, sin, cos, out, lse, dout)


def _fused_qkv_fwd(qkv, sin, cos, num_heads):
  native.load()
  out, lse_BxHxL = _fused_qkv_fwd_call(num_heads, qkv, sin, cos)
  return out, (qkv, sin, cos, out, lse_BxHxL)


def _fused_qkv_bwd(num_heads, residuals, dout):
  del num_heads
  qkv, sin, cos, out, lse = residuals
  dqkv = _fused_qkv_bwd_call(qkv, sin, cos, out, lse, dout.astype(qkv.dtype))
  # The angles are functions of positions, not parameters: no gradient flows to them.
  return dqkv, jnp.zeros_like(sin), jnp.zeros_like(cos)


fused_cpu_qkv_attention.defvjp(_fused_qkv_fwd, _fused_qkv_bwd)


# Kernel name -> (q [B, L, H, E], k, v [B, L, K, E], block_size) -> [B, L, H, E].
KERNELS = {
    "fused_cpu": lambda q, k, v, block_size: fused_cpu_attention(q, k, v),
    "blocked": blocked_attention,
    "xla": _library_attention(None),
    "cudnn": _library_attention("cudnn"),
    # Its own tiles (tpu_attention.TILE), multiples of the TPU's 128 lanes: not 'blocked''s size.
    "pallas_tpu": lambda q, k, v, block_size: tpu_attention.splash_attention(q, k, v),
}
