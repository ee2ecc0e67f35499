"""Hugging Face export / import.

    python -m mobilellm_jax.hf export --workdir RUN --out DIR   # a Llama directory transformers loads
    python -m mobilellm_jax.hf import --hf_dir DIR              # our model config, checked against
                                                                # transformers' logits
Train on from such a directory with --config.train.init_from_hf=DIR.
"""

import argparse
import sys

import numpy as np


def _export(args) -> None:
  from mobilellm_jax.hf import export_run  # pylint: disable=import-outside-toplevel
  result = export_run(args.workdir, args.out)
  print(f"wrote {result['out']}: step {result['step']} of {args.workdir} as a {result['layers']}-"
        "layer Llama; load it with transformers.AutoModelForCausalLM.from_pretrained"
        f"({result['out']!r}) and AutoTokenizer.from_pretrained({result['out']!r})")


def _import(args) -> None:
  from mobilellm_jax.configs import get_config  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.hf import read_directory  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.hf.runs import logits_difference  # pylint: disable=import-outside-toplevel
  model_config, params = read_directory(args.hf_dir, get_config(args.preset).model)
  fields = ("vocab_size", "dim", "num_layers", "num_heads", "num_kv_heads", "ffn_dim",
            "tie_embeddings", "layer_sharing", "share_repeats", "max_seq_len", "rope_theta",
            "norm_eps")
  print("model: " + ", ".join(f"{f}={model_config[f]}" for f in fields))
  length = min(32, model_config.max_seq_len)
  tokens = np.random.default_rng(0).integers(0, model_config.vocab_size, (2, length))
  difference = logits_difference(args.hf_dir, model_config, params, tokens)
  print(f"max |logits - transformers' logits| on 2 x {length} random tokens: {difference:.2e}")
  print(f"train from it: python experiments/train.py --config=mobilellm_jax/configs/base.py:"
        f"{args.preset} --config.train.init_from_hf={args.hf_dir} --workdir RUN")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", required=True)
  export = commands.add_parser("export", help="a run's newest checkpoint -> a Llama directory")
  export.add_argument("--workdir", required=True, help="a run directory (has config.json)")
  export.add_argument("--out", required=True, help="the directory to write")
  imported = commands.add_parser("import", help="a Llama directory -> our model, checked")
  imported.add_argument("--hf_dir", required=True, help="a Hugging Face Llama directory")
  imported.add_argument("--preset", default="cpu", help="preset for the non-architecture fields")
  args = parser.parse_args(argv)
  from mobilellm_jax.training.checkpointing import CheckpointError  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.data import DataError  # pylint: disable=import-outside-toplevel
  try:
    (_export if args.command == "export" else _import)(args)
  except (CheckpointError, DataError, ValueError, FileNotFoundError, KeyError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
