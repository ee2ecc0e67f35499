"""Print continuations of prompts from a run's newest checkpoint (or a Hugging Face Llama directory).

    python experiments/generate.py --workdir runs/depth_vs_width/<run> --prompt "It is a truth"
    python experiments/generate.py --workdir RUN --prompts_file prompts.txt --temperature 0.8 --top_p 0.9
    python experiments/generate.py --hf_dir DIR --prompt "It is a truth"

Prompts start after EOS, the document boundary the runs trained with (as evaluation contexts
do); a continuation ends at EOS or after --max_new_tokens. Greedy unless --temperature > 0.
"""

import argparse
import sys
from pathlib import Path

from mobilellm_jax.training import runtime
from mobilellm_jax.training.checkpointing import CheckpointError
from mobilellm_jax.data import DataError


def _load(args):
  """(model config, params, tokenizer, what was loaded)."""
  from mobilellm_jax.data import Tokenizer, load_tokenizer  # pylint: disable=import-outside-toplevel
  if args.hf_dir:
    from mobilellm_jax.configs import get_config  # pylint: disable=import-outside-toplevel
    from mobilellm_jax.hf import read_directory  # pylint: disable=import-outside-toplevel
    model_config, params = read_directory(args.hf_dir, get_config("cpu").model)
    spm = Path(args.hf_dir) / "tokenizer.model"
    if not spm.exists():
      raise DataError(f"{spm} not found: generate.py reads prompts with a SentencePiece model")
    return model_config, params, Tokenizer(spm), args.hf_dir
  from mobilellm_jax.training.loop import restore_for_eval  # pylint: disable=import-outside-toplevel
  config, _, params, step = restore_for_eval(args.workdir)
  return config.model, params, load_tokenizer(config), f"{args.workdir} at step {step}"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--workdir", help="a run directory (has config.json and checkpoints)")
  source.add_argument("--hf_dir", help="a Hugging Face Llama directory with tokenizer.model")
  parser.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
  parser.add_argument("--prompts_file", help="a file with one prompt per line")
  parser.add_argument("--max_new_tokens", type=int, default=64)
  parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
  parser.add_argument("--top_k", type=int, default=0, help="0 = off")
  parser.add_argument("--top_p", type=float, default=1.0, help="1 = off")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  runtime.prepare_process()
  from mobilellm_jax.model.generation import Generator, Sampling  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.model import ModelArgs  # pylint: disable=import-outside-toplevel
  try:
    prompts = list(args.prompt)
    if args.prompts_file:
      prompts += [line.rstrip("\n") for line in Path(args.prompts_file).read_text().splitlines()
                  if line.strip()]
    if not prompts:
      raise ValueError("give --prompt TEXT or --prompts_file FILE")
    if args.max_new_tokens < 1 or args.temperature < 0 or args.top_k < 0 or not 0 < args.top_p <= 1:
      raise ValueError("--max_new_tokens must be >= 1, --temperature >= 0, --top_k >= 0 and "
                       "--top_p in (0, 1]")
    model_config, params, tokenizer, loaded = _load(args)
    generator = Generator(params, ModelArgs.from_config(model_config))
    sampling = Sampling(args.temperature, args.top_k, args.top_p)
    encoded = [[tokenizer.eos_id] + tokenizer.encode(p) for p in prompts]
    outputs = generator(encoded, args.max_new_tokens, sampling, eos_id=tokenizer.eos_id,
                        seed=args.seed)
  except (CheckpointError, DataError, ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  how = "greedy" if not args.temperature else (
      f"temperature {args.temperature}, top_k {args.top_k}, top_p {args.top_p}, seed {args.seed}")
  print(f"# {loaded}; {how}")
  for prompt_ids, new in zip(encoded, outputs):
    ended = bool(new) and new[-1] == tokenizer.eos_id
    print(f"--- {len(new)} new tokens{' (ended at EOS)' if ended else ''}")
    # Decoded with the prompt: a continuation alone would lose its leading space.
    print(tokenizer.decode(prompt_ids[1:] + (new[:-1] if ended else new)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
