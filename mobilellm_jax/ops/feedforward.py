"""Feed-forward layers with a hand-written backward pass.

Autodiff of `down(silu(x @ gate) * (x @ up))` makes XLA:CPU transpose the [tokens, ffn] activation
gradients before each weight-gradient matmul and re-fuse the SiLU chain into every consumer. This
custom VJP computes each gradient once, with the weight gradients as in-place 2-D matmuls
(dense.py), measured against autodiff by bench/train_throughput.py. Same numbers as autodiff
(tests/test_kernels.py).

The model runs the (fwd, bwd) pairs below through norm.rms_norm_into, with the block's norm fused
in front; `swiglu` and `relu_mlp` are the same pairs as standalone custom-VJP functions.
Weights arrive already cast to the compute dtype; elementwise math runs in float32.
"""

import jax
import jax.numpy as jnp

from mobilellm_jax.ops import native
from mobilellm_jax.ops.dense import input_grad, matmul_bwd, weight_grad


@jax.custom_vjp
def swiglu(x_BxLxD, w_gate_DxF, w_up_DxF, w_down_FxD):
  """down(silu(x @ gate) * (x @ up))."""
  gate, up = x_BxLxD @ w_gate_DxF, x_BxLxD @ w_up_DxF
  return (jax.nn.silu(gate.astype(jnp.float32)) * up).astype(x_BxLxD.dtype) @ w_down_FxD


def swiglu_fwd(x, w_gate, w_up, w_down):
  """(output, residuals); the residuals leave out x (see swiglu_bwd)."""
  gate, up = x @ w_gate, x @ w_up
  hidden = (jax.nn.silu(gate.astype(jnp.float32)) * up).astype(x.dtype)
  return hidden @ w_down, (gate, up, w_gate, w_up, w_down)


def swiglu_bwd(x, residuals, dout_BxLxD):
  """(dx, dw_gate, dw_up, dw_down), given x again and swiglu_fwd's residuals."""
  gate, up, w_gate, w_up, w_down = residuals
  F, D = w_down.shape
  dhidden = input_grad(w_down, dout_BxLxD)
  if native.runs_here(gate, up, dhidden):
    # One C++ pass instead of XLA's four element-wise loops; it writes dgate|dup side by side,
    # so gate and up take one input-gradient matmul (no sum of two) and one weight-gradient
    # matmul against [D, 2F], each twice as wide.
    hidden, dgate_up = gating_grads_native(gate, up, dhidden)
    dx, dw_gate_up = matmul_bwd(x, jnp.concatenate([w_gate, w_up], axis=1), dgate_up)
    dw_gate, dw_up = dw_gate_up[:, :F], dw_gate_up[:, F:]
  else:  # accelerators, bfloat16: XLA fuses these; gate and up stay separate (sharded on F)
    hidden, dgate, dup = gating_grads_xla(gate, up, dhidden)
    dx_gate, dw_gate = matmul_bwd(x, w_gate, dgate)
    dx_up, dw_up = matmul_bwd(x, w_up, dup)
    dx = dx_gate + dx_up
  dw_down = weight_grad(hidden.reshape(-1, F), dout_BxLxD.reshape(-1, D))
  return dx, dw_gate, dw_up, dw_down


def gating_grads_native(gate, up, dhidden):
  """(silu(g) u, [dh u silu'(g), dh silu(g)] side by side as [..., 2F]) by the C++ kernel
  (native/cpu_swiglu.cc), float32."""
  native.load()
  return tuple(_swiglu_bwd_call(gate, up, dhidden))


@native.batch_split
def _swiglu_bwd_call(gate, up, dhidden):
  *lead, F = gate.shape
  return jax.ffi.ffi_call(
      "mobilellm_swiglu_bwd", (jax.ShapeDtypeStruct(gate.shape, jnp.float32),
                               jax.ShapeDtypeStruct((*lead, 2 * F), jnp.float32)))(
          gate, up, dhidden)


def gating_grads_xla(gate, up, dhidden):
  """(silu(g) u, dh u silu'(g), dh silu(g)) in gate's dtype, computed in float32."""
  g, u, dh = (a.astype(jnp.float32) for a in (gate, up, dhidden))
  sig = jax.nn.sigmoid(g)
  silu = g * sig
  dgate = dh * u * sig * (1.0 + g * (1.0 - sig))  # silu' = s(1 + g(1-s))
  return tuple(a.astype(gate.dtype) for a in (silu * u, dgate, dh * silu))


def _saving_input(fwd, bwd):
  """A (fwd, bwd) pair for defvjp from one whose residuals leave out the input x."""
  def fwd_with_x(x, *weights):
    out, residuals = fwd(x, *weights)
    return out, (x, residuals)

  def bwd_with_x(saved, dout):
    return bwd(*saved, dout)
  return fwd_with_x, bwd_with_x


swiglu.defvjp(*_saving_input(swiglu_fwd, swiglu_bwd))


@jax.custom_vjp
def relu_mlp(x_BxLxD, w_up_DxF, w_down_FxD):
  """down(relu(x @ up)): the paper's FC-ReLU-FC baseline."""
  return jax.nn.relu(x_BxLxD @ w_up_DxF) @ w_down_FxD


def relu_fwd(x, w_up, w_down):
  """(output, residuals); the residuals leave out x (see relu_bwd)."""
  up = x @ w_up
  return jax.nn.relu(up) @ w_down, (up, w_up, w_down)


def relu_bwd(x, residuals, dout_BxLxD):
  """(dx, dw_up, dw_down), given x again and relu_fwd's residuals."""
  up, w_up, w_down = residuals
  dhidden, dw_down = matmul_bwd(jax.nn.relu(up), w_down, dout_BxLxD)
  dup = jnp.where(up > 0, dhidden, 0).astype(x.dtype)
  dx, dw_up = matmul_bwd(x, w_up, dup)
  return dx, dw_up, dw_down


relu_mlp.defvjp(*_saving_input(relu_fwd, relu_bwd))
