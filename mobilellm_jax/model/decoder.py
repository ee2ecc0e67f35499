"""The MobileLLM decoder (Flax NNX): pre-RMSNorm, RoPE, grouped-query attention, SwiGLU or ReLU FFN,
tied or separate output head, and block-wise layer sharing run as a scan over the unique blocks.

Shapes are suffixed: B batch, L sequence, D dim, H query heads, K kv heads, G = H/K, E head_dim,
F ffn hidden, V vocab, N unique blocks.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from mobilellm_jax.ops import feedforward
from mobilellm_jax.ops.attention import causal_attention, fused_cpu_qkv_attention, resolve
from mobilellm_jax.ops.dense import dense, matmul_bwd, matmul_fwd
from mobilellm_jax.ops.layer_scan import scan_layers
from mobilellm_jax.ops.norm import Normalized, rms_norm, rms_norm_into
from mobilellm_jax.model.sharing import layer_passes
from mobilellm_jax.training.sharding import constrain, constrain_gradient


@dataclasses.dataclass(frozen=True)
class ModelArgs:
  """Hashable copy of config.model (nnx modules keep static attributes hashable for jit)."""
  vocab_size: int
  dim: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  ffn_type: str
  ffn_dim: int
  tie_embeddings: bool
  layer_sharing: str
  share_repeats: int
  max_seq_len: int
  rope_theta: float
  norm_eps: float
  init_std: float
  param_dtype: str
  compute_dtype: str
  scan_layers: bool
  remat: str
  attention: str = "auto"  # defaults keep configs saved before these fields loadable
  attention_block: int = 64
  unroll_max_depth: int = 0
  init_scheme: str = "fixed"

  @property
  def scanned(self) -> bool:
    """Whether the blocks run under a scan: asked for, and the stack deeper than
    unroll_max_depth. A scan stacks each block's saved activations over depth and copies them
    in and out (a measurable share of a small step); unrolled code has none of that but compiles
    in time growing with depth."""
    return self.scan_layers and self.num_layers * self.share_repeats > self.unroll_max_depth

  @classmethod
  def from_config(cls, model_config) -> "ModelArgs":
    values = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
    return cls(**values)

  @property
  def head_dim(self) -> int:
    return self.dim // self.num_heads


def init_std(args: ModelArgs, fan_in: int, residual_output: bool = False) -> float:
  """Stddev of a matrix's normal init under model.init_scheme: 'fixed' is init_std for every
  matrix (the paper's code); 'fan_in' is 1/sqrt(fan_in); 'fan_in_depth' also divides the
  matrices that write into the residual stream (attention output, FFN down) by
  sqrt(2 x effective depth), so the residual stream's variance at init does not grow with depth."""
  if args.init_scheme == "fixed":
    return args.init_std
  std = fan_in ** -0.5
  if args.init_scheme == "fan_in_depth" and residual_output:
    std /= (2 * args.num_layers * args.share_repeats) ** 0.5
  return std


def _param(rngs, shape, axes, args: ModelArgs, init="normal", *, fan_in=None,
           residual_output=False):
  """A parameter carrying its logical axis names (mapped to mesh axes by training/sharding.py)."""
  dtype = jnp.dtype(args.param_dtype)
  if init == "ones":
    value = jnp.ones(shape, dtype)
  else:
    std = init_std(args, fan_in, residual_output)
    value = (std * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)
  return nnx.Param(value, out_sharding=axes, eager_sharding=False)


class RMSNorm(nnx.Module):
  """x / rms(x) * scale, computed in float32."""

  def __init__(self, args: ModelArgs, rngs: nnx.Rngs):
    self.eps = args.norm_eps
    self.scale = _param(rngs, (args.dim,), ("embed",), args, init="ones")

  def __call__(self, x_BxLxD):
    return rms_norm(x_BxLxD, self.scale[...], self.eps)


class PreNorm(RMSNorm):
  """A block's RMSNorm: norm(x) is handed to the projections that read it as a Normalized, so
  each fuses the norm into its backward pass (recomputed, not saved: ops/norm.py)."""

  def __call__(self, x_BxLxD) -> Normalized:
    return Normalized(x_BxLxD, self.scale[...], self.eps)


# Each block's two norms fused with the projections that read their output (ops/norm.py).
_normed_matmul = rms_norm_into(matmul_fwd, matmul_bwd)
_normed_swiglu = rms_norm_into(feedforward.swiglu_fwd, feedforward.swiglu_bwd)
_normed_relu = rms_norm_into(feedforward.relu_fwd, feedforward.relu_bwd)


def rope_sin_cos(positions_BxL, head_dim: int, theta: float):
  """RoPE angles for the rotate-half layout (as Hugging Face Llama), each [B, L, E/2]."""
  inv_freq_E2 = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
  angles_BxLxE2 = positions_BxL.astype(jnp.float32)[..., None] * inv_freq_E2
  return jnp.sin(angles_BxLxE2), jnp.cos(angles_BxLxE2)


def apply_rope(x_BxLxNxE, sin_BxLxE2, cos_BxLxE2):
  x1, x2 = jnp.split(x_BxLxNxE.astype(jnp.float32), 2, axis=-1)
  sin, cos = sin_BxLxE2[:, :, None, :], cos_BxLxE2[:, :, None, :]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BxLxNxE.dtype)


class Attention(nnx.Module):
  """Causal grouped-query attention: K key/value heads each serve H/K query heads."""

  def __init__(self, args: ModelArgs, rngs: nnx.Rngs):
    D, H, K, E = args.dim, args.num_heads, args.num_kv_heads, args.head_dim
    self.dtype = jnp.dtype(args.compute_dtype)
    self.impl, self.block_size = args.attention, args.attention_block
    self.wq_DxHxE = _param(rngs, (D, H, E), ("embed", "heads", "head_dim"), args, fan_in=D)
    self.wk_DxKxE = _param(rngs, (D, K, E), ("embed", "kv_heads", "head_dim"), args, fan_in=D)
    self.wv_DxKxE = _param(rngs, (D, K, E), ("embed", "kv_heads", "head_dim"), args, fan_in=D)
    self.wo_HxExD = _param(rngs, (H, E, D), ("heads", "head_dim", "embed"), args, fan_in=H * E,
                           residual_output=True)

  def __call__(self, x: Normalized, sin, cos):
    """Attention of the normalised stream; the norm runs inside the q/k/v projection."""
    dt = self.dtype
    # One projection for q, k and v: one larger matmul, and one saved input for the backward
    # pass instead of three (a scan over layers stacks and copies each saved value).
    D, H, E = self.wq_DxHxE.shape
    K = self.wk_DxKxE.shape[1]
    # Its gradient is laid out as the weights' ("embed" rows) where it is made, so under fsdp it
    # is reduce-scattered onto their shards rather than all-reduced whole and then sliced.
    w_DxM = constrain_gradient(
        jnp.concatenate([w[...].reshape(D, -1) for w in
                         (self.wq_DxHxE, self.wk_DxKxE, self.wv_DxKxE)], axis=1),
        ("embed", None)).astype(dt)
    qkv_BxLxM = x.into(_normed_matmul, w_DxM)
    if resolve(self.impl, dt, E) == "fused_cpu":  # the kernel reads qkv in place, does RoPE
      out_BxLxHxE = fused_cpu_qkv_attention(qkv_BxLxM, sin, cos, H)
    else:
      q_BxLxHxE = qkv_BxLxM[..., :H * E].reshape(*qkv_BxLxM.shape[:-1], H, E)
      k_BxLxKxE = qkv_BxLxM[..., H * E:(H + K) * E].reshape(*qkv_BxLxM.shape[:-1], K, E)
      v_BxLxKxE = qkv_BxLxM[..., (H + K) * E:].reshape(*qkv_BxLxM.shape[:-1], K, E)
      q_BxLxHxE = apply_rope(q_BxLxHxE, sin, cos)
      k_BxLxKxE = apply_rope(k_BxLxKxE, sin, cos)
      out_BxLxHxE = causal_attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, impl=self.impl,
                                     block_size=self.block_size)
    return dense(out_BxLxHxE, self.wo_HxExD[...].astype(dt), 2)


class FeedForward(nnx.Module):
  """SwiGLU: down(silu(gate x) * up x); or the baseline FC-ReLU-FC: down(relu(up x))."""

  def __init__(self, args: ModelArgs, rngs: nnx.Rngs):
    D, F = args.dim, args.ffn_dim
    self.gated = args.ffn_type == "swiglu"
    self.dtype = jnp.dtype(args.compute_dtype)
    if self.gated:
      self.w_gate_DxF = _param(rngs, (D, F), ("embed", "mlp"), args, fan_in=D)
    self.w_up_DxF = _param(rngs, (D, F), ("embed", "mlp"), args, fan_in=D)
    self.w_down_FxD = _param(rngs, (F, D), ("mlp", "embed"), args, fan_in=F, residual_output=True)

  def __call__(self, x: Normalized):
    """The FFN of the normalised stream; the norm runs inside the first projection(s)."""
    dt = self.dtype
    up_DxF, down_FxD = self.w_up_DxF[...].astype(dt), self.w_down_FxD[...].astype(dt)
    if self.gated:
      return x.into(_normed_swiglu, self.w_gate_DxF[...].astype(dt), up_DxF, down_FxD)
    return x.into(_normed_relu, up_DxF, down_FxD)


ACTIVATION_AXES = ("batch", None, None)  # [B, L, D] split by batch only (sharding.constrain)


class Block(nnx.Module):
  """Pre-norm residual block: x + attn(norm(x)), then x + ffn(norm(x))."""

  def __init__(self, args: ModelArgs, rngs: nnx.Rngs):
    self.attn_norm = PreNorm(args, rngs)
    self.attn = Attention(args, rngs)
    self.ffn_norm = PreNorm(args, rngs)
    self.ffn = FeedForward(args, rngs)

  def __call__(self, x_BxLxD, sin, cos):
    x_BxLxD = x_BxLxD + self.attn(self.attn_norm(x_BxLxD), sin, cos)
    return constrain(x_BxLxD + self.ffn(self.ffn_norm(x_BxLxD)), ACTIVATION_AXES)


_REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole block
    "dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class Decoder(nnx.Module):
  """Token ids [B, L] -> logits [B, L, V] (float32)."""

  def __init__(self, args: ModelArgs, rngs: nnx.Rngs):
    self.args = args
    # fan_in D: the (tied) table is also the output head, which reads D inputs per logit.
    self.embed_VxD = _param(rngs, (args.vocab_size, args.dim), ("vocab", "embed"), args,
                            fan_in=args.dim)
    make_blocks = nnx.vmap(lambda r: Block(args, r), in_axes=0, out_axes=0,
                           transform_metadata={nnx.PARTITION_NAME: "layers"})
    self.blocks = make_blocks(rngs.split(args.num_layers))  # stacked: [N, ...] per parameter
    self.final_norm = RMSNorm(args, rngs)
    if not args.tie_embeddings:
      self.head_DxV = _param(rngs, (args.dim, args.vocab_size), ("embed", "vocab"), args,
                             fan_in=args.dim)

  def __call__(self, tokens_BxL, positions_BxL=None):
    hidden_BxLxD, head_VxD = self.features(tokens_BxL, positions_BxL)
    return jnp.einsum("bld,vd->blv", hidden_BxLxD, head_VxD, preferred_element_type=jnp.float32)

  def features(self, tokens_BxL, positions_BxL=None):
    """(final-normed hidden states [B, L, D], output head [V, D]), both in the compute dtype:
    logits = hidden @ head^T. The training loss fuses that matmul into a chunked cross-entropy
    (ops/losses.py) instead of materialising [B, L, V] logits."""
    args = self.args
    B, L = tokens_BxL.shape
    if L > args.max_seq_len:
      raise ValueError(f"sequence length {L} exceeds model.max_seq_len ({args.max_seq_len})")
    if positions_BxL is None:
      positions_BxL = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
    dt = jnp.dtype(args.compute_dtype)
    # The table gathered over fsdp, the token ids left where they are (sharding.constrain).
    table_VxD = constrain(self.embed_VxD[...], ("vocab", None))
    x_BxLxD = constrain(jnp.take(table_VxD, tokens_BxL, axis=0).astype(dt), ACTIVATION_AXES)
    sin, cos = rope_sin_cos(positions_BxL, args.head_dim, args.rope_theta)
    x_BxLxD = self._run_blocks(x_BxLxD, sin, cos)
    head_VxD = self.embed_VxD[...] if args.tie_embeddings else self.head_DxV[...].T
    return self.final_norm(x_BxLxD), head_VxD.astype(dt)

  def _run_blocks(self, x_BxLxD, sin, cos):
    """Runs the sharing schedule: each pass visits all N blocks (forward or reversed), each block
    `inner` times in a row. Scanned and unrolled paths compute the same thing."""
    args = self.args
    graphdef, stacked_state = nnx.split(self.blocks)

    def run_block(x, layer_state, sin_cos):
      return nnx.merge(graphdef, layer_state)(x, *sin_cos)

    if args.remat != "none":
      run_block = jax.checkpoint(run_block, policy=_REMAT_POLICIES[args.remat])

    def visit(x, layer_state, sin_cos, inner):
      for _ in range(inner):
        x = run_block(x, layer_state, sin_cos)
      return x

    if not args.scanned:
      # One split per parameter, not an index per layer: the gradient of a split is one
      # concatenate, where p[i] pads each layer's gradient to the whole stack and adds them.
      pieces = jax.tree.map(lambda p: jnp.split(p, args.num_layers), stacked_state)
      layer_states = [jax.tree.map(lambda p, i=i: p[i][0], pieces,
                                   is_leaf=lambda x: isinstance(x, list))
                      for i in range(args.num_layers)]
    for reverse, inner in layer_passes(args.layer_sharing, args.share_repeats):
      if args.scanned:
        x_BxLxD = scan_layers(functools.partial(visit, inner=inner), x_BxLxD, stacked_state,
                              (sin, cos), reverse=reverse)
      else:
        order = range(args.num_layers - 1, -1, -1) if reverse else range(args.num_layers)
        for i in order:
          x_BxLxD = visit(x_BxLxD, layer_states[i], (sin, cos), inner)
    return x_BxLxD


def build_model(model_config, seed: int = 0) -> Decoder:
  """A Decoder with freshly initialised parameters (on the default device)."""
  return Decoder(ModelArgs.from_config(model_config), rngs=nnx.Rngs(seed))
