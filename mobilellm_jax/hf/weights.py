"""Our parameters <-> Hugging Face `LlamaForCausalLM` state dicts (numpy arrays).

A layer-shared model exports as a plain Llama whose layers follow the sharing schedule (block i's
weights copied to every effective layer that runs it), so runtimes without layer sharing get the
same logits; importing with the schedule folds the copies back into one block each, after
checking that they are still equal bit for bit.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mobilellm_jax.model import ModelArgs
from mobilellm_jax.model.sharing import layer_schedule


class SharingMismatch(ValueError):
  """Layers the sharing schedule says are one block hold different weights."""


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


def _layer_names(args: ModelArgs) -> dict:
  """HF name within a layer -> (our block path, numpy block -> HF matrix, HF matrix -> block)."""
  D, H, K, E = args.dim, args.num_heads, args.num_kv_heads, args.head_dim
  return {
      "input_layernorm.weight": (("attn_norm", "scale"), lambda w: w, lambda w: w),
      "post_attention_layernorm.weight": (("ffn_norm", "scale"), lambda w: w, lambda w: w),
      "self_attn.q_proj.weight": (("attn", "wq_DxHxE"), lambda w: w.reshape(D, H * E).T,
                                  lambda w: w.T.reshape(D, H, E)),
      "self_attn.k_proj.weight": (("attn", "wk_DxKxE"), lambda w: w.reshape(D, K * E).T,
                                  lambda w: w.T.reshape(D, K, E)),
      "self_attn.v_proj.weight": (("attn", "wv_DxKxE"), lambda w: w.reshape(D, K * E).T,
                                  lambda w: w.T.reshape(D, K, E)),
      "self_attn.o_proj.weight": (("attn", "wo_HxExD"), lambda w: w.reshape(H * E, D).T,
                                  lambda w: w.T.reshape(H, E, D)),
      "mlp.gate_proj.weight": (("ffn", "w_gate_DxF"), lambda w: w.T, lambda w: w.T),
      "mlp.up_proj.weight": (("ffn", "w_up_DxF"), lambda w: w.T, lambda w: w.T),
      "mlp.down_proj.weight": (("ffn", "w_down_FxD"), lambda w: w.T, lambda w: w.T),
  }


def state_dict_from_params(args: ModelArgs, params: dict, expand_sharing: bool = True,
                           dtype=np.float32) -> dict[str, np.ndarray]:
  """A pure parameter dict (as checkpoints hold it) as a `LlamaForCausalLM` state dict. The head
  is written out as `lm_head.weight` even when tied (loaders tie it back; converters that expect
  it find it)."""
  hf_config_dict(args)  # refuses what Llama cannot express
  cast = lambda a: np.ascontiguousarray(np.asarray(a).astype(dtype))
  blocks = params["blocks"]
  schedule = (layer_schedule(args.num_layers, args.layer_sharing, args.share_repeats)
              if expand_sharing else list(range(args.num_layers)))
  out = {"model.embed_tokens.weight": cast(params["embed_VxD"]),
         "model.norm.weight": cast(params["final_norm"]["scale"])}
  out["lm_head.weight"] = (out["model.embed_tokens.weight"] if args.tie_embeddings
                           else cast(np.asarray(params["head_DxV"]).T))
  for name, ((group, leaf), to_hf, _) in _layer_names(args).items():
    stack = np.asarray(blocks[group][leaf])
    for layer, block in enumerate(schedule):
      out[f"model.layers.{layer}.{name}"] = cast(to_hf(stack[block]))
  return out


def params_from_state_dict(args: ModelArgs, state_dict, dtype=None) -> dict:
  """A `LlamaForCausalLM` state dict as our pure parameter dict for `args`. With layer sharing the
  state dict holds the schedule's expanded layers; each block is read from the first layer that
  runs it, and SharingMismatch is raised when another copy differs."""
  dtype = np.dtype(dtype or args.param_dtype)
  get = lambda name: np.asarray(state_dict[name])
  schedule = layer_schedule(args.num_layers, args.layer_sharing, args.share_repeats)
  blocks: dict = {}
  for name, ((group, leaf), _, from_hf) in _layer_names(args).items():
    layers = [get(f"model.layers.{layer}.{name}") for layer in range(len(schedule))]
    stack = []
    for block in range(args.num_layers):
      copies = [layers[i] for i, b in enumerate(schedule) if b == block]
      if any(not np.array_equal(copies[0], other) for other in copies[1:]):
        raise SharingMismatch(f"{name} differs between the layers that run block {block} under "
                              f"{args.layer_sharing} x{args.share_repeats}")
      stack.append(from_hf(copies[0]))
    blocks.setdefault(group, {})[leaf] = np.stack(stack).astype(dtype)
  params = dict(embed_VxD=get("model.embed_tokens.weight").astype(dtype),
                final_norm=dict(scale=get("model.norm.weight").astype(dtype)), blocks=blocks)
  if not args.tie_embeddings:
    params["head_DxV"] = get("lm_head.weight").T.astype(dtype)
  return params


def to_hf_state_dict(model, expand_sharing: bool = True) -> dict[str, np.ndarray]:
  """Our Decoder's parameters as a `LlamaForCausalLM` state dict (float32 numpy)."""
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  return state_dict_from_params(model.args, params, expand_sharing)


def load_hf_state_dict(model, state_dict: dict[str, np.ndarray]) -> None:
  """Writes a `LlamaForCausalLM` state dict into our Decoder (in place); a shared model's state
  dict holds the schedule's expanded layers."""
  params = params_from_state_dict(model.args, state_dict)
  params = jax.tree.map(jnp.asarray, params)
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)
