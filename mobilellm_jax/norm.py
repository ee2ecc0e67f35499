"""RMSNorm with a hand-written backward pass that keeps only the input and one f32 scalar per token.

Autodiff of `x * rsqrt(mean(x^2) + eps) * scale` in float32 saves float32 copies of the input and
of the normalised input for the backward pass. Inside the scan over layers each saved value is
stacked over depth ([layers, B, L, D] float32: 4 GB each at MobileLLM-350M x 16 x 2048) and XLA
then copies those stacks between the forward and backward loops. Here the backward pass
recomputes the normalised input from the saved input (compute dtype) and the saved reciprocal
RMS. Same numbers as autodiff (tests/test_kernels.py).
"""

import functools

import jax
import jax.numpy as jnp


def _normalise(x, eps):
  x32 = x.astype(jnp.float32)
  rstd = jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return x32 * rstd, rstd


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def rms_norm(x_BxLxD, scale_D, eps: float):
  """x / rms(x) * scale, computed in float32, returned in x's dtype."""
  return _fwd(x_BxLxD, scale_D, eps)[0]


def _fwd(x, scale, eps):
  normed, rstd = _normalise(x, eps)
  return (normed * scale.astype(jnp.float32)).astype(x.dtype), (x, rstd, scale)


def _bwd(eps, residuals, dy):
  del eps
  x, rstd, scale = residuals
  normed = x.astype(jnp.float32) * rstd
  dy32 = dy.astype(jnp.float32)
  dscale = jnp.sum(dy32 * normed, axis=tuple(range(x.ndim - 1)))
  dnormed = dy32 * scale.astype(jnp.float32)
  # d/dx of x * rstd(x): rstd * (dn - n * mean(dn * n)) along the normalised axis.
  dx = rstd * (dnormed - normed * jnp.mean(dnormed * normed, axis=-1, keepdims=True))
  return dx.astype(x.dtype), dscale.astype(scale.dtype)


rms_norm.defvjp(_fwd, _bwd)
