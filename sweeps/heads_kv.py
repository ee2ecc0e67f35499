"""Query heads and KV heads at a fixed size (the paper: 16 query heads of 64 best; 16 -> 4 KV
heads about neutral at 125M). Fewer KV heads free parameters; the FFN takes them back."""

from mobilellm_jax.runner.sweeps import base_config, matched_model, THREE_SEEDS, with_seeds

DESCRIPTION = "query heads x KV heads at fixed parameters (FFN absorbs the difference)"
HEADLINE = "label"
PLOT = "bars"
VERDICTS = "heads_kv"


def get_runs(scale):
  if scale == "paper":
    layers, budget, grid = 30, 124_635_456, [(64, 1), (64, 3), (64, 9), (32, 1), (32, 4)]
  elif scale == "cpu":
    layers, budget, grid = 8, 2_000_000, [(64, 1), (32, 1), (32, 2), (32, 4), (16, 1), (16, 4)]
  else:
    layers, budget, grid = 2, 60_000, [(16, 1), (16, 2), (32, 1)]
  runs = []
  for head_dim, heads_per_kv in grid:
    config = matched_model(base_config(scale), scale, budget, layers, head_dim=head_dim,
                           heads_per_kv=heads_per_kv)
    m = config.model
    config.tracking.label = f"{m.num_heads}q/{m.num_kv_heads}kv (head_dim {head_dim})"
    runs.append(config)
  return with_seeds(runs, THREE_SEEDS if scale == "cpu" else (0,))
