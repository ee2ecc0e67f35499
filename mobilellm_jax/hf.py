"""Hugging Face Llama interop: our parameters <-> `LlamaForCausalLM` state dicts (numpy arrays).

A layer-shared model exports as a plain Llama whose layers follow the sharing schedule (block i's
weights copied to every effective layer that runs it), so runtimes without layer sharing get the
same logits. The output head is always written out (`lm_head.weight`), even when tied, since a
missing head broke the official checkpoints' HF conversion.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mobilellm_jax.model import ModelArgs
from mobilellm_jax.schedule import layer_schedule


def hf_config_dict(args: ModelArgs, expand_sharing: bool = True) -> dict:
  """Keyword arguments for `transformers.LlamaConfig` describing the same network."""
  if args.ffn_type != "swiglu":
    raise ValueError("Hugging Face Llama has only a gated (SwiGLU) FFN; model.ffn_type must be 'swiglu'")
  num_layers = len(layer_schedule(args.num_layers, args.layer_sharing, args.share_repeats))
  if not expand_sharing:
    num_layers = args.num_layers
  return dict(vocab_size=args.vocab_size, hidden_size=args.dim, intermediate_size=args.ffn_dim,
              num_hidden_layers=num_layers, num_attention_heads=args.num_heads,
              num_key_value_heads=args.num_kv_heads, head_dim=args.head_dim,
              max_position_embeddings=args.max_seq_len, rms_norm_eps=args.norm_eps,
              rope_theta=args.rope_theta, hidden_act="silu", attention_bias=False, mlp_bias=False,
              tie_word_embeddings=args.tie_embeddings)


def to_hf_state_dict(model, expand_sharing: bool = True) -> dict[str, np.ndarray]:
  """Our Decoder's parameters as a `LlamaForCausalLM` state dict (float32 numpy)."""
  args: ModelArgs = model.args
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  f32 = lambda a: np.asarray(a, dtype=np.float32)
  D, H, K, E = args.dim, args.num_heads, args.num_kv_heads, args.head_dim
  blocks = params["blocks"]
  schedule = (layer_schedule(args.num_layers, args.layer_sharing, args.share_repeats)
              if expand_sharing else list(range(args.num_layers)))
  out = {"model.embed_tokens.weight": f32(params["embed_VxD"]),
         "model.norm.weight": f32(params["final_norm"]["scale"])}
  out["lm_head.weight"] = (out["model.embed_tokens.weight"] if args.tie_embeddings
                           else f32(params["head_DxV"]).T)
  for layer, block in enumerate(schedule):
    p = f"model.layers.{layer}."
    attn, ffn = blocks["attn"], blocks["ffn"]
    out[p + "input_layernorm.weight"] = f32(blocks["attn_norm"]["scale"][block])
    out[p + "post_attention_layernorm.weight"] = f32(blocks["ffn_norm"]["scale"][block])
    out[p + "self_attn.q_proj.weight"] = f32(attn["wq_DxHxE"][block]).reshape(D, H * E).T
    out[p + "self_attn.k_proj.weight"] = f32(attn["wk_DxKxE"][block]).reshape(D, K * E).T
    out[p + "self_attn.v_proj.weight"] = f32(attn["wv_DxKxE"][block]).reshape(D, K * E).T
    out[p + "self_attn.o_proj.weight"] = f32(attn["wo_HxExD"][block]).reshape(H * E, D).T
    out[p + "mlp.gate_proj.weight"] = f32(ffn["w_gate_DxF"][block]).T
    out[p + "mlp.up_proj.weight"] = f32(ffn["w_up_DxF"][block]).T
    out[p + "mlp.down_proj.weight"] = f32(ffn["w_down_FxD"][block]).T
  return out


def load_hf_state_dict(model, state_dict: dict[str, np.ndarray]) -> None:
  """Writes an unshared `LlamaForCausalLM` state dict into our Decoder (in place)."""
  args: ModelArgs = model.args
  D, H, K, E, N = args.dim, args.num_heads, args.num_kv_heads, args.head_dim, args.num_layers
  get = lambda name: np.asarray(state_dict[name], dtype=np.float32)
  stack = lambda name, fn: np.stack([fn(get(f"model.layers.{i}.{name}")) for i in range(N)])
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  params["embed_VxD"] = get("model.embed_tokens.weight")
  params["final_norm"]["scale"] = get("model.norm.weight")
  if not args.tie_embeddings:
    params["head_DxV"] = get("lm_head.weight").T
  blocks = params["blocks"]
  blocks["attn_norm"]["scale"] = stack("input_layernorm.weight", lambda w: w)
  blocks["ffn_norm"]["scale"] = stack("post_attention_layernorm.weight", lambda w: w)
  blocks["attn"]["wq_DxHxE"] = stack("self_attn.q_proj.weight", lambda w: w.T.reshape(D, H, E))
  blocks["attn"]["wk_DxKxE"] = stack("self_attn.k_proj.weight", lambda w: w.T.reshape(D, K, E))
  blocks["attn"]["wv_DxKxE"] = stack("self_attn.v_proj.weight", lambda w: w.T.reshape(D, K, E))
  blocks["attn"]["wo_HxExD"] = stack("self_attn.o_proj.weight", lambda w: w.T.reshape(H, E, D))
  blocks["ffn"]["w_gate_DxF"] = stack("mlp.gate_proj.weight", lambda w: w.T)
  blocks["ffn"]["w_up_DxF"] = stack("mlp.up_proj.weight", lambda w: w.T)
  blocks["ffn"]["w_down_FxD"] = stack("mlp.down_proj.weight", lambda w: w.T)
  params = jax.tree.map(lambda a: jnp.asarray(a, dtype=args.param_dtype), params)
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)
