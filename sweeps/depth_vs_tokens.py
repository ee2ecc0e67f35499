"""The depth grid at several token budgets: does the best depth move deeper as tokens per
parameter grow? (The paper trains ~2,000 tokens/param; a CPU affords ~1.)"""

from mobilellm_jax.runner.sweeps import base_config, matched_model, THREE_SEEDS, with_seeds

DESCRIPTION = "depth x token budget at fixed parameters: where is the best depth at each budget?"
HEADLINE = "num_layers"
PLOT = "depth"
VERDICTS = "depth_vs_tokens"
NOTE = ("cpu: 5 depths x 4 budgets (0.5M-4M tokens, 0.25-2 tokens/param) at 2M params, three "
        "seeds where a depth lies within two seed stds of the best (4, 8 and 16 layers; 2 layers "
        "at 0.5M), one elsewhere; the cpu recipe (depth-aware init). The estimate above assumes "
        "30% MFU; the cpu runs measure ~50-65% on idle cores.")


def cpu_seeds(depth: int, tokens: int) -> tuple:
  """Three seeds where a neighbour of the best depth lies within two seed stds of it, one where
  it is further."""
  return THREE_SEEDS if depth in (4, 8, 16) or (depth, tokens) == (2, 500_000) else (0,)


def get_runs(scale):
  if scale == "paper":
    budget, depths, tokens = 124_635_456, (6, 12, 30, 62), (25e9, 100e9, 250e9)
  elif scale == "cpu":
    # The train split holds 5.1M tokens: the largest budget is still under one epoch.
    budget, depths, tokens = 2_000_000, (2, 4, 8, 16, 32), (500_000, 1_000_000, 2_000_000,
                                                            4_000_000)
  else:
    budget, depths, tokens = 60_000, (1, 4), (1024, 2048)
  runs = []
  for token_budget in tokens:
    for depth in depths:
      config = matched_model(base_config(scale), scale, budget, depth)
      config.train.update(num_steps=0, num_tokens=int(token_budget))
      tokens_label = next(f"{token_budget / unit:g}{suffix}" for unit, suffix in
                          ((1e9, "B"), (1e6, "M"), (1e3, "k"), (1, "")) if token_budget >= unit)
      config.tracking.update(label=f"{depth}L {tokens_label} tokens",
                             run_name=f"L{depth}-d{config.model.dim}-tok{tokens_label}")
      runs += with_seeds([config], cpu_seeds(depth, token_budget) if scale == "cpu" else (0,))
  return runs
