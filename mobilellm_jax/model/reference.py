"""A plain reference decoder: the paper's maths, top to bottom, as pure functions.

The test oracle for the fast model (model/decoder.py), which fuses norms into projections, runs
hand-written backward passes and C++/Pallas attention kernels, scans over layers and carries
sharding annotations. None of that is here: float32 throughout, autodiff only, one block at a
time in the sharing schedule's order. It reads the SAME parameter pytree as the fast model:

    graphdef, state = nnx.split(build_model(config.model))
    params = nnx.to_pure_dict(state)
    logits = decoder(params, tokens, config.model)

Parameter names (blocks stacked on a leading axis N, the unique blocks, whatever scan_layers is):
    embed_VxD                      token embedding; also the output head when tied
    head_DxV                       separate output head (tie_embeddings False)
    final_norm.scale               [D]
    blocks.attn_norm.scale         [N, D]
    blocks.attn.wq_DxHxE           [N, D, H, E]
    blocks.attn.wk_DxKxE, wv_DxKxE [N, D, K, E]
    blocks.attn.wo_HxExD           [N, H, E, D]
    blocks.ffn_norm.scale          [N, D]
    blocks.ffn.w_gate_DxF          [N, D, F] (swiglu only)
    blocks.ffn.w_up_DxF            [N, D, F]
    blocks.ffn.w_down_FxD          [N, F, D]

Conventions (matching decoder.py): RMSNorm is x * rsqrt(mean(x^2) + eps) * scale; RoPE uses the
rotate-half layout (as Hugging Face Llama: the first E/2 features pair with the last E/2) with
inv_freq = theta^(-2i/E); attention scores are scaled by 1/sqrt(E); query head h reads kv head
h // (H/K); no embedding scale; no biases.
"""

import jax
import jax.numpy as jnp

from mobilellm_jax.model.sharing import layer_schedule


def rms_norm(x, scale, eps):
  """x / sqrt(mean(x^2) + eps) * scale, over the last axis."""
  return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def rope(x_LxNxE, positions_L, theta):
  """Rotary position embedding, rotate-half layout: feature i pairs with feature i + E/2 and the
  pair is rotated by angle position * theta^(-2i/E)."""
  E = x_LxNxE.shape[-1]
  inv_freq = theta ** (-jnp.arange(0, E, 2, dtype=jnp.float32) / E)  # [E/2]
  angle = positions_L.astype(jnp.float32)[:, None, None] * inv_freq  # [L, 1, E/2]
  x1, x2 = x_LxNxE[..., :E // 2], x_LxNxE[..., E // 2:]
  return jnp.concatenate([x1 * jnp.cos(angle) - x2 * jnp.sin(angle),
                          x2 * jnp.cos(angle) + x1 * jnp.sin(angle)], axis=-1)


def repeat_kv(x_LxKxE, groups):
  """Each kv head repeated for its `groups` query heads: query head h reads kv head h // groups."""
  return jnp.repeat(x_LxKxE, groups, axis=1)


def attention(x_LxD, p, positions_L, theta):
  """Causal grouped-query self-attention of one sequence: H query heads, K key/value heads, each
  kv head repeated for the G = H/K query heads that share it; softmax in float32."""
  q = jnp.einsum("ld,dhe->lhe", x_LxD, p["wq_DxHxE"])
  k = jnp.einsum("ld,dke->lke", x_LxD, p["wk_DxKxE"])
  v = jnp.einsum("ld,dke->lke", x_LxD, p["wv_DxKxE"])
  q, k = rope(q, positions_L, theta), rope(k, positions_L, theta)
  H, K, E = q.shape[1], k.shape[1], q.shape[2]
  k, v = repeat_kv(k, H // K), repeat_kv(v, H // K)
  scores = jnp.einsum("qhe,khe->hqk", q, k).astype(jnp.float32) / jnp.sqrt(jnp.float32(E))
  L = x_LxD.shape[0]
  causal = jnp.tril(jnp.ones((L, L), dtype=bool))
  scores = jnp.where(causal, scores, -jnp.inf)
  weights = jax.nn.softmax(scores, axis=-1)
  out = jnp.einsum("hqk,khe->qhe", weights, v)
  return jnp.einsum("qhe,hed->qd", out, p["wo_HxExD"])


def swiglu(x_LxD, p):
  """down(silu(x W_gate) * x W_up)."""
  return (jax.nn.silu(x_LxD @ p["w_gate_DxF"]) * (x_LxD @ p["w_up_DxF"])) @ p["w_down_FxD"]


def relu_ffn(x_LxD, p):
  """down(relu(x W_up)): the FC-ReLU-FC baseline."""
  return jax.nn.relu(x_LxD @ p["w_up_DxF"]) @ p["w_down_FxD"]


def block(x_LxD, p, positions_L, cfg):
  """Pre-norm residual block: x + attention(norm(x)), then x + ffn(norm(x))."""
  x_LxD = x_LxD + attention(rms_norm(x_LxD, p["attn_norm"]["scale"], cfg.norm_eps), p["attn"],
                            positions_L, cfg.rope_theta)
  ffn = swiglu if cfg.ffn_type == "swiglu" else relu_ffn
  return x_LxD + ffn(rms_norm(x_LxD, p["ffn_norm"]["scale"], cfg.norm_eps), p["ffn"])


def unique_block(params, i):
  """Block i's parameters, sliced out of the stack over unique blocks."""
  return jax.tree.map(lambda w: w[i], params["blocks"])


def decoder(params, tokens_BxL, cfg):
  """Token ids [B, L] -> logits [B, L, V] (float32), for model config `cfg` (config.model)."""
  params = jax.tree.map(lambda w: jnp.asarray(w, jnp.float32), params)
  schedule = layer_schedule(cfg.num_layers, cfg.layer_sharing, cfg.share_repeats)
  head_VxD = params["embed_VxD"] if cfg.tie_embeddings else params["head_DxV"].T

  def one_sequence(tokens_L):
    positions_L = jnp.arange(tokens_L.shape[0])
    x_LxD = params["embed_VxD"][tokens_L]
    for i in schedule:  # e.g. reverse x2 over 3 blocks: 0, 1, 2, 2, 1, 0
      x_LxD = block(x_LxD, unique_block(params, i), positions_L, cfg)
    return rms_norm(x_LxD, params["final_norm"]["scale"], cfg.norm_eps) @ head_VxD.T

  return jnp.stack([one_sequence(t) for t in tokens_BxL])
