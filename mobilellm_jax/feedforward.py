"""Feed-forward layers with a hand-written backward pass.

Autodiff of `down(silu(x @ gate) * (x @ up))` makes XLA:CPU transpose the [tokens, ffn] activation
gradients before each weight-gradient matmul and re-fuse the SiLU chain into every consumer. This
custom VJP computes each gradient once, with the weight gradients as in-place 2-D matmuls
(dense.py): about 1.5x faster forward + backward at the cpu preset (bench/README.md). Same numbers
as autodiff (tests/test_kernels.py).

Weights arrive already cast to the compute dtype; elementwise math runs in float32.
"""

import jax
import jax.numpy as jnp

from mobilellm_jax.dense import weight_grad


def _dense_grads(x_BxLxI, dout_BxLxO, w_IxO):
  """(d input, d weight) of out = x @ w, given d out."""
  dw = weight_grad(x_BxLxI.reshape(-1, w_IxO.shape[0]), dout_BxLxO.reshape(-1, w_IxO.shape[1]))
  return jnp.einsum("blo,io->bli", dout_BxLxO, w_IxO), dw


@jax.custom_vjp
def swiglu(x_BxLxD, w_gate_DxF, w_up_DxF, w_down_FxD):
  """down(silu(x @ gate) * (x @ up))."""
  gate, up = x_BxLxD @ w_gate_DxF, x_BxLxD @ w_up_DxF
  return (jax.nn.silu(gate.astype(jnp.float32)) * up).astype(x_BxLxD.dtype) @ w_down_FxD


def _swiglu_fwd(x, w_gate, w_up, w_down):
  gate, up = x @ w_gate, x @ w_up
  hidden = (jax.nn.silu(gate.astype(jnp.float32)) * up).astype(x.dtype)
  return hidden @ w_down, (x, gate, up, w_gate, w_up, w_down)


def _swiglu_bwd(residuals, dout_BxLxD):
  x, gate, up, w_gate, w_up, w_down = residuals
  g, u = gate.astype(jnp.float32), up.astype(jnp.float32)
  sig = jax.nn.sigmoid(g)
  silu = g * sig
  dhidden, dw_down = _dense_grads((silu * u).astype(x.dtype), dout_BxLxD, w_down)
  dhidden = dhidden.astype(jnp.float32)
  dgate = (dhidden * u * sig * (1.0 + g * (1.0 - sig))).astype(x.dtype)  # silu' = s(1 + g(1-s))
  dup = (dhidden * silu).astype(x.dtype)
  dx_gate, dw_gate = _dense_grads(x, dgate, w_gate)
  dx_up, dw_up = _dense_grads(x, dup, w_up)
  return dx_gate + dx_up, dw_gate, dw_up, dw_down


swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)


@jax.custom_vjp
def relu_mlp(x_BxLxD, w_up_DxF, w_down_FxD):
  """down(relu(x @ up)): the paper's FC-ReLU-FC baseline."""
  return jax.nn.relu(x_BxLxD @ w_up_DxF) @ w_down_FxD


def _relu_fwd(x, w_up, w_down):
  up = x @ w_up
  return jax.nn.relu(up) @ w_down, (x, up, w_up, w_down)


def _relu_bwd(residuals, dout_BxLxD):
  x, up, w_up, w_down = residuals
  dhidden, dw_down = _dense_grads(jax.nn.relu(up), dout_BxLxD, w_down)
  dup = jnp.where(up > 0, dhidden, 0).astype(x.dtype)
  dx, dw_up = _dense_grads(x, dup, w_up)
  return dx, dw_up, dw_down


relu_mlp.defvjp(_relu_fwd, _relu_bwd)
