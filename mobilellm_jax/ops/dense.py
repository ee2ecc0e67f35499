"""Projections whose weight gradient is one 2-D matmul over the flattened token axis.

Autodiff of `einsum("bld,dhe->blhe", x, w)` gives the weight gradient as a contraction over two
axes (batch and sequence); XLA:CPU then copies one operand into a transposed layout first, a full
extra pass over a [tokens, width] activation per projection. Flattening tokens to one axis lets
the matmul read both operands in place. Same numbers as autodiff (tests/test_kernels.py).
"""

import functools
import math

import jax
import jax.numpy as jnp

from mobilellm_jax.training import target


def weight_grad(x_TxI, dout_TxO):
  """x^T dout, [I, O], for token-major 2-D operands (contracts the token axis in place)."""
  return jax.lax.dot_general(x_TxI, dout_TxO, (((0,), (0,)), ((), ())))


def wide_weight_grad(x_TxI, dout_TxO):
  """x^T dout, [I, O], for a narrow x and a wide dout (the head: I = dim, O = vocab). XLA:CPU
  runs a matmul with a transposed operand on a slower path; transposing the narrow operand first
  (a small copy, kept by the barrier from being folded back into the matmul) gives it the fast
  one. Each matmul's rate at its shape: bench/matmul_floor.py --verbose."""
  if target.platform() != "cpu":
    return weight_grad(x_TxI, dout_TxO)
  return jax.lax.optimization_barrier(x_TxI.T) @ dout_TxO


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense(x, w, num_in: int = 1):
  """x [..., *in] @ w [*in, *out] -> [..., *out], contracting the last `num_in` axes of x with
  the first `num_in` axes of w."""
  return _matmul(x, w, num_in)[0]


def _matmul(x, w, num_in):
  in_size = math.prod(w.shape[:num_in])
  x_TxI, w_IxO = x.reshape(-1, in_size), w.reshape(in_size, -1)
  y = (x_TxI @ w_IxO).reshape(*x.shape[:x.ndim - num_in], *w.shape[num_in:])
  return y, x_TxI, w_IxO


def _dense_fwd(x, w, num_in):
  # x and w are saved as they came, not as the 2-D views: under a scan over layers a reshaped
  # copy is one more stacked residual (the attention output was stacked twice), while x itself
  # is usually saved already by its producer and w is a slice of the stacked parameters.
  return _matmul(x, w, num_in)[0], (x, w)


def _dense_bwd(num_in, residuals, dy):
  x, w = residuals
  in_size = math.prod(w.shape[:num_in])
  x_TxI, w_IxO = x.reshape(-1, in_size), w.reshape(in_size, -1)
  dx, dw = matmul_bwd(x_TxI, w_IxO, dy.reshape(x_TxI.shape[0], w_IxO.shape[1]))
  return dx.reshape(x.shape), dw.reshape(w.shape)


dense.defvjp(_dense_fwd, _dense_bwd)


# The same 2-D projection as a (forward, backward) pair that leaves its input out of the
# residuals, for norm.rms_norm_into (which recomputes the input instead of saving it).
def matmul_fwd(x_xI, w_IxO):
  return x_xI @ w_IxO, w_IxO


def matmul_bwd(x_xI, w_IxO, dy_xO):
  """(d input, d weight) of y = x @ w (any leading axes), given d y."""
  dw = weight_grad(x_xI.reshape(-1, w_IxO.shape[0]), dy_xO.reshape(-1, w_IxO.shape[1]))
  return input_grad(w_IxO, dy_xO), dw


def input_grad(w_IxO, dy_xO):
  """d input of y = x @ w (any leading axes), given d y."""
  return jnp.einsum("...o,io->...i", dy_xO, w_IxO)
