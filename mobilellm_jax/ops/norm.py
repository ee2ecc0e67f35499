"""RMSNorm with a hand-written backward pass that keeps only the input and one f32 scalar per token.

Autodiff of `x * rsqrt(mean(x^2) + eps) * scale` in float32 saves float32 copies of the input and
of the normalised input for the backward pass. Inside the scan over layers each saved value is
stacked over depth ([layers, B, L, D] float32: 4 GB each at MobileLLM-350M x 16 x 2048) and XLA
then copies those stacks between the forward and backward loops. Here the backward pass
recomputes the normalised input from the saved input (compute dtype) and the saved reciprocal
RMS. `rms_norm_into` goes one step further for a norm whose only reader is a projection: it
recomputes the normalised input instead of saving it; `Normalized` is how a model hands such a
norm to that projection while still reading as `attn(norm(x))`. Same numbers as autodiff
(tests/test_kernels.py).
"""

import dataclasses
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
  return _norm_bwd(x, rstd, x.astype(jnp.float32) * rstd, scale, dy)


def _norm_bwd(x, rstd, normed, scale, dy):
  dy32 = dy.astype(jnp.float32)
  dscale = jnp.sum(dy32 * normed, axis=tuple(range(x.ndim - 1)))
  dnormed = dy32 * scale.astype(jnp.float32)
  # d/dx of x * rstd(x): rstd * (dn - n * mean(dn * n)) along the normalised axis.
  dx = rstd * (dnormed - normed * jnp.mean(dnormed * normed, axis=-1, keepdims=True))
  return dx.astype(x.dtype), dscale.astype(scale.dtype)


rms_norm.defvjp(_fwd, _bwd)


def rms_norm_into(consumer_fwd, consumer_bwd):
  """f(eps, x, scale, *args) = consumer(rms_norm(x, scale, eps), *args) as one custom VJP that
  saves x and the reciprocal RMS, not the normalised input: the backward pass recomputes that
  (one element-wise pass) instead of the scan over layers stacking, copying and slicing one
  more [B, L, D] activation per block.

  consumer_fwd(xn, *args) -> (y, residuals), with xn left out of the residuals;
  consumer_bwd(xn, residuals, dy) -> (dxn, *dargs).
  """
  @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
  def fused(eps, x, scale, *args):
    return fused_fwd(eps, x, scale, *args)[0]

  def fused_fwd(eps, x, scale, *args):
    normed, rstd = _normalise(x, eps)
    y, residuals = consumer_fwd((normed * scale.astype(jnp.float32)).astype(x.dtype), *args)
    return y, (x, rstd, scale, residuals)

  def fused_bwd(eps, saved, dy):
    del eps
    x, rstd, scale, residuals = saved
    normed = x.astype(jnp.float32) * rstd
    dxn, *dargs = consumer_bwd((normed * scale.astype(jnp.float32)).astype(x.dtype), residuals, dy)
    return (*_norm_bwd(x, rstd, normed, scale, dxn), *dargs)

  fused.defvjp(fused_fwd, fused_bwd)
  return fused


@dataclasses.dataclass(frozen=True)
class Normalized:
  """rms_norm(x, scale, eps), not computed yet: a projection made by rms_norm_into reads it
  with `into` (the norm fused into its custom VJP); anything else asks for `value()`."""
  x: jax.Array
  scale: jax.Array
  eps: float

  def into(self, fused, *args):
    """fused(norm(x), *args) for `fused` = rms_norm_into(consumer_fwd, consumer_bwd)."""
    return fused(self.eps, self.x, self.scale, *args)

  def value(self) -> jax.Array:
    return rms_norm(self.x, self.scale, self.eps)
