"""Next-token cross-entropy fused with the output head, in sequence chunks.

The plain loss materialises [B, L, V] float32 logits (64 MB at batch 16 x 256, vocab 4096) and
autodiff then writes and re-reads a gradient of the same size. Here a scan over chunks of positions
computes each chunk's logits, log-sum-exp and, when differentiated, the chunk's gradient right away
(softmax minus one-hot), so only a cache-sized [B, chunk, V] block exists at a time. The gradients
are computed in the forward pass (the loss is a scalar, so the backward pass only scales them): three
matmuls per chunk, no recomputation.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mobilellm_jax.ops import native
from mobilellm_jax.training import sharding, target
from mobilellm_jax.ops.dense import wide_weight_grad

CHUNK_LOGITS = 1 << 22  # CPU: 4M float32 logits = 16 MB per chunk (1024 tokens at vocab 4096)
# Accelerators want big matmuls, not cache-sized ones: 256M logits = 1 GB float32 per chunk
# (8 x 1024 tokens at vocab 32000); the unfused loss would hold all of [B, L, V] twice.
ACCELERATOR_CHUNK_LOGITS = 1 << 28


def chunk_length(batch: int, length: int, vocab: int, chunk_logits: int | None = None,
                 dim: int = 0) -> int:
  """The largest divisor of `length` with batch * chunk * vocab <= chunk_logits (at least 1);
  chunk_logits defaults by the compile target's platform (cache-sized on CPU, large on
  accelerators).

  With the model width `dim`, a chunk may also grow to about `dim` tokens (batch * chunk): every
  chunk adds its [D, V] head gradient into the running sum, three passes over D x V floats, so
  chunks much narrower than D move more memory on that sum than on their own logits. At
  MobileLLM-125M on CPU (vocab 32000, dim 576, 2 x 512 tokens) chunks grow from 128 to 512
  tokens; at the cpu preset (dim 128) nothing changes. Measured by bench/train_throughput.py
  --sizes 125m."""
  if chunk_logits is None:
    chunk_logits = CHUNK_LOGITS if target.platform() == "cpu" else ACCELERATOR_CHUNK_LOGITS
  bound = max(1, chunk_logits // max(batch * vocab, 1), -(-dim // max(batch, 1)))
  return max(d for d in range(1, length + 1) if length % d == 0 and d <= bound)


def cross_entropy(logits_BxLxV, targets_BxL):
  """Reference (unfused) mean next-token negative log-likelihood in float32 (nats/token)."""
  return _nll_sum(logits_BxLxV.astype(jnp.float32), targets_BxL)[0] / targets_BxL.size


def _chunked(x_BxLx, chunk: int):
  """[B, L, ...] -> [L/chunk, B, chunk, ...] (scan over the leading axis)."""
  B, L = x_BxLx.shape[:2]
  return jnp.swapaxes(x_BxLx.reshape(B, L // chunk, chunk, *x_BxLx.shape[2:]), 0, 1)


def _chunk_logits(h_BxCxD, head_VxD):
  logits = jnp.einsum("bcd,vd->bcv", h_BxCxD, head_VxD, preferred_element_type=jnp.float32)
  return sharding.constrain(logits, ("batch", None, "vocab"))  # never the whole batch's logits


def _nll_sum(logits_BxCxV, targets_BxC):
  log_z = jax.nn.logsumexp(logits_BxCxV, axis=-1)
  target_logit = jnp.take_along_axis(logits_BxCxV, targets_BxC[..., None], axis=-1)[..., 0]
  return jnp.sum(log_z - target_logit), log_z


def loss_and_logit_grads(logits_BxCxV, targets_BxC, count: int):
  """(summed nll of the chunk, d(mean nll)/d logits = (softmax - onehot(target)) / count), float32.
  On CPU one pass of the C++ kernel (native/cpu_cross_entropy.cc: each row read from memory once)
  instead of XLA's four; elsewhere `loss_and_logit_grads_xla`."""
  if native.runs_here(logits_BxCxV):
    return loss_and_logit_grads_native(logits_BxCxV, targets_BxC, count)
  return loss_and_logit_grads_xla(logits_BxCxV, targets_BxC, count)


def loss_and_logit_grads_native(logits_BxCxV, targets_BxC, count: int):
  native.load()
  dlogits, nll_BxC = _cross_entropy_call(1.0 / count, logits_BxCxV, targets_BxC.astype(jnp.int32))
  return jnp.sum(nll_BxC), dlogits


@functools.partial(native.batch_split, num_static=1)
def _cross_entropy_call(scale, logits_BxCxV, targets_BxC):
  return jax.ffi.ffi_call(
      "mobilellm_softmax_cross_entropy",
      (jax.ShapeDtypeStruct(logits_BxCxV.shape, jnp.float32),
       jax.ShapeDtypeStruct(targets_BxC.shape, jnp.float32)))(
          logits_BxCxV, targets_BxC, scale=np.float32(scale))


def loss_and_logit_grads_xla(logits_BxCxV, targets_BxC, count: int):
  nll, log_z = _nll_sum(logits_BxCxV, targets_BxC)
  onehot = jax.nn.one_hot(targets_BxC, logits_BxCxV.shape[-1], dtype=jnp.float32)
  return nll, (jnp.exp(logits_BxCxV - log_z[..., None]) - onehot) / count


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def fused_cross_entropy(hidden_BxLxD, head_VxD, targets_BxL, chunk: int):
  """mean over tokens of -log softmax(hidden @ head^T)[target], nats/token, float32."""
  def body(total, xs):
    h, t = xs
    return total + _nll_sum(_chunk_logits(h, head_VxD), t)[0], None
  total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32),
                          (_chunked(hidden_BxLxD, chunk), _chunked(targets_BxL, chunk)))
  return total / targets_BxL.size


def _fwd(hidden_BxLxD, head_VxD, targets_BxL, chunk):
  count = targets_BxL.size
  vocab = head_VxD.shape[0]

  def body(carry, xs):
    total, dhead_DxV = carry
    h, t = xs
    nll, dlogits = loss_and_logit_grads(_chunk_logits(h, head_VxD), t, count)
    dlogits = dlogits.astype(h.dtype)
    dh = jnp.einsum("bcv,vd->bcd", dlogits, head_VxD)
    # Accumulated as [D, V] (h^T dlogits): the narrow operand is the transposed one (dense.py).
    dhead = wide_weight_grad(h.reshape(-1, h.shape[-1]), dlogits.reshape(-1, vocab))
    dhead_DxV = dhead_DxV + dhead.astype(jnp.float32)
    return (total + nll, dhead_DxV), dh

  init = (jnp.zeros((), jnp.float32), jnp.zeros(head_VxD.shape[::-1], jnp.float32))
  (total, dhead_DxV), dh_chunks = jax.lax.scan(
      body, init, (_chunked(hidden_BxLxD, chunk), _chunked(targets_BxL, chunk)))
  B, L, D = hidden_BxLxD.shape
  dhidden_BxLxD = jnp.swapaxes(dh_chunks, 0, 1).reshape(B, L, D)
  return total / count, (dhidden_BxLxD, dhead_DxV.T.astype(head_VxD.dtype))


def _bwd(chunk, residuals, dloss):
  del chunk
  dhidden, dhead = residuals
  return (dloss * dhidden).astype(dhidden.dtype), (dloss * dhead).astype(dhead.dtype), None


fused_cross_entropy.defvjp(_fwd, _bwd)
