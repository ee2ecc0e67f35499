"""A run's newest checkpoint out to a Hugging Face directory, and such a directory in as the
starting weights of a run (`train.init_from_hf`)."""

from pathlib import Path

import jax
import numpy as np
import sentencepiece as spm

from mobilellm_jax.hf.directory import read_directory, write_directory
from mobilellm_jax.model import ModelArgs


def export_run(workdir, out_dir) -> dict:
  """Writes the run's newest checkpoint and tokenizer as a Hugging Face Llama directory;
  returns {'step', 'out', 'layers'} (layers: the expanded Llama's)."""
  from mobilellm_jax.data import load_tokenizer  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.training.loop import restore_for_eval  # pylint: disable=import-outside-toplevel
  config, _, params, step = restore_for_eval(str(workdir))
  tokenizer = load_tokenizer(config)
  args = ModelArgs.from_config(config.model)
  bos = spm.SentencePieceProcessor(model_file=tokenizer.path).bos_id()
  write_directory(out_dir, args, params, tokenizer.path, bos_id=bos if bos >= 0 else None,
                  eos_id=tokenizer.eos_id)
  layers = args.num_layers * args.share_repeats
  return dict(step=step, out=str(out_dir), layers=layers)


def init_from_hf(config):
  """(config, params) for a run that starts from the weights in config.train.init_from_hf: a copy
  of config whose model section takes the directory's architecture (and whose
  data.tokenizer_path, when empty, its tokenizer.model), and the parameters as host arrays."""
  hf_dir = Path(config.train.init_from_hf).expanduser()
  model_config, params = read_directory(hf_dir, config.model)
  config = config.copy_and_resolve_references()
  config.model = model_config
  if not config.data.tokenizer_path and (hf_dir / "tokenizer.model").exists():
    config.data.tokenizer_path = str(hf_dir / "tokenizer.model")
  return config, params


def place(params, shardings):
  """Host parameters as global arrays in the given shardings (every process holds all of them)."""
  return jax.tree.map(lambda a, s: jax.make_array_from_callback(a.shape, s, lambda i: a[i]),
                      params, shardings)


def logits_difference(hf_dir, model_config, params, tokens_BxL: np.ndarray) -> float:
  """Max |our logits - transformers' logits| on tokens_BxL, float32 (transformers and torch
  needed)."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ValueError(f"checking against transformers needs torch and transformers ({error}): "
                     "pip install -r requirements-test.txt") from None
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.model import build_model  # pylint: disable=import-outside-toplevel
  model = build_model(model_config)
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, jax.tree.map(jax.numpy.asarray, params))
  nnx.update(model, state)
  ours = np.asarray(model(jax.numpy.asarray(tokens_BxL)), np.float32)
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
  with torch.no_grad():
    theirs = hf(torch.from_numpy(np.asarray(tokens_BxL)).long()).logits.float().numpy()
  return float(np.abs(ours - theirs).max())
