"""Hugging Face model directories: write one that `AutoModelForCausalLM.from_pretrained` and
`AutoTokenizer.from_pretrained` load with no custom code, and read a Llama one back into our
model config and parameters.

The directory is a plain Llama (sharing expanded into repeated layers, safetensors, the tied head
as transformers expects). Its config.json also records our sharing schedule under `mobilellm_jax`
(transformers keeps unknown keys and ignores them), so an import folds the repeats back into
shared blocks; a directory from elsewhere imports unshared.
"""

import json
import os
from pathlib import Path

import jax
import numpy as np

from mobilellm_jax.hf import tokenizer as hf_tokenizer
from mobilellm_jax.hf.weights import (SharingMismatch, hf_config_dict, params_from_state_dict,
                                      state_dict_from_params)
from mobilellm_jax.model import ModelArgs
from mobilellm_jax.model.sharing import layer_schedule

WEIGHTS = "model.safetensors"
# Text the export encodes with both tokenizers before it returns.
TOKENIZER_PROBES = ("It is a truth universally acknowledged", " leading space", "two  spaces",
                    "\nnew line first", "lines\n\nand\n end ", "digits 12345, caf\u00e9 \u2013 \u201cq\u201d",
                    "", " ", "tab\there", "\u65e5\u672c")


def config_json(args: ModelArgs, bos_id: int | None, eos_id: int | None) -> dict:
  """config.json of the expanded Llama (rope_theta both where transformers 4 and 5 read it)."""
  fields = hf_config_dict(args)
  fields.update(architectures=["LlamaForCausalLM"], model_type="llama", torch_dtype=args.param_dtype,
                dtype=args.param_dtype, bos_token_id=bos_id, eos_token_id=eos_id,
                rope_parameters=dict(rope_type="default", rope_theta=args.rope_theta),
                initializer_range=args.init_std, use_cache=True,
                mobilellm_jax=dict(num_layers=args.num_layers, layer_sharing=args.layer_sharing,
                                   share_repeats=args.share_repeats))
  return fields


def write_directory(out_dir, args: ModelArgs, params: dict, tokenizer_path=None,
                    bos_id: int | None = None, eos_id: int | None = None) -> Path:
  """Writes config.json, generation_config.json, model.safetensors (in model.param_dtype) and,
  given a SentencePiece model, the tokenizer files, checked to encode like it."""
  from safetensors.flax import save_file  # pylint: disable=import-outside-toplevel
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  state = state_dict_from_params(args, jax.device_get(params), dtype=np.float32)
  if args.tie_embeddings:  # transformers' own save_pretrained stores a tied head once
    del state["lm_head.weight"]
  tensors = {k: jax.numpy.asarray(v, dtype=args.param_dtype) for k, v in state.items()}
  save_file(tensors, str(out_dir / WEIGHTS), metadata={"format": "pt"})
  os.chmod(out_dir / WEIGHTS, 0o644)  # written private; the directory is meant to be shared
  (out_dir / "config.json").write_text(json.dumps(config_json(args, bos_id, eos_id), indent=2))
  generation = dict(bos_token_id=bos_id, eos_token_id=eos_id, do_sample=False)
  (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2))
  if tokenizer_path:
    hf_tokenizer.write_tokenizer(tokenizer_path, out_dir, args.max_seq_len)
    hf_tokenizer.check_same_ids(tokenizer_path, out_dir, TOKENIZER_PROBES)
  return out_dir


def _load_state(hf_dir: Path) -> dict:
  """All tensors of model.safetensors, or of the shards an index names (as numpy float32)."""
  from safetensors import safe_open  # pylint: disable=import-outside-toplevel
  index = hf_dir / f"{WEIGHTS}.index.json"
  files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists()
           else [WEIGHTS])
  state = {}
  for name in files:
    with safe_open(str(hf_dir / name), framework="flax") as f:
      for key in f.keys():
        state[key] = np.asarray(f.get_tensor(key), dtype=np.float32)
  return state


def model_fields(hf_config: dict) -> dict:
  """Our config.model fields for a Llama config.json (the architecture fields only)."""
  if hf_config.get("model_type") != "llama":
    raise ValueError(f"not a Llama checkpoint: model_type is {hf_config.get('model_type')!r}")
  rope = hf_config.get("rope_parameters") or {}
  scaling = hf_config.get("rope_scaling") or {}
  rope_type = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
  problems = [f"{key} is {hf_config.get(key)!r}" for key, ok in
              (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False))
              if hf_config.get(key, ok) != ok]
  if rope_type != "default":
    problems.append(f"RoPE scaling {rope_type!r}")
  heads, dim = hf_config["num_attention_heads"], hf_config["hidden_size"]
  if hf_config.get("head_dim") not in (None, dim // heads):
    problems.append(f"head_dim {hf_config['head_dim']} is not hidden_size/num_attention_heads")
  if problems:
    raise ValueError("this Llama checkpoint uses what our model does not have: " + "; ".join(problems))
  fields = dict(vocab_size=hf_config["vocab_size"], dim=dim,
                num_layers=hf_config["num_hidden_layers"], num_heads=heads,
                num_kv_heads=hf_config.get("num_key_value_heads") or heads, ffn_type="swiglu",
                ffn_dim=hf_config["intermediate_size"],
                tie_embeddings=bool(hf_config.get("tie_word_embeddings", False)),  # Llama's default
                max_seq_len=hf_config.get("max_position_embeddings", 2048),
                rope_theta=float(rope.get("rope_theta", hf_config.get("rope_theta", 10000.0))),
                norm_eps=float(hf_config.get("rms_norm_eps", 1e-6)),
                layer_sharing="none", share_repeats=1)
  return fields


def _shared_fields(fields: dict, hf_config: dict) -> dict | None:
  """The fields with the sharing schedule our export recorded, when it matches the layer count."""
  ours = hf_config.get("mobilellm_jax") or {}
  if not ours or ours.get("layer_sharing", "none") == "none":
    return None
  shared = dict(fields, num_layers=ours["num_layers"], layer_sharing=ours["layer_sharing"],
                share_repeats=ours["share_repeats"])
  schedule = layer_schedule(shared["num_layers"], shared["layer_sharing"], shared["share_repeats"])
  return shared if len(schedule) == fields["num_layers"] else None


def read_directory(hf_dir, base_model_config):
  """(model config, params): `base_model_config` (e.g. a preset's config.model) with the
  directory's architecture, and the parameters as a pure dict in its param_dtype. Layers our
  export expanded from shared blocks fold back into them unless their copies differ (then the
  model imports unshared)."""
  from mobilellm_jax.configs import validate_model  # pylint: disable=import-outside-toplevel
  hf_dir = Path(hf_dir)
  if not (hf_dir / "config.json").exists():
    raise FileNotFoundError(f"{hf_dir}/config.json not found: is {hf_dir} a Hugging Face model directory?")
  hf_config = json.loads((hf_dir / "config.json").read_text())
  fields = model_fields(hf_config)
  state = _load_state(hf_dir)
  for candidate in filter(None, (_shared_fields(fields, hf_config), fields)):
    model_config = base_model_config.copy_and_resolve_references()
    model_config.update(candidate)
    validate_model(model_config)
    try:
      params = params_from_state_dict(ModelArgs.from_config(model_config), state)
    except SharingMismatch:
      continue
    return model_config, params
  raise AssertionError("unreachable: the unshared candidate always imports")
