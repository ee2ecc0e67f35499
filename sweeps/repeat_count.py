"""Immediate block-wise sharing at 1x, 2x, 3x, 4x (the paper: 2x gives +0.4-0.6, more gives
diminishing returns)."""

from mobilellm_jax.configs import get_config
from mobilellm_jax.runner.sweeps import base_config, THREE_SEEDS, with_seeds

DESCRIPTION = "immediate sharing with each block run 1-4 times: same parameters, deeper compute"
HEADLINE = "share_repeats"
PLOT = "repeats"
VERDICTS = "repeat_count"


def get_runs(scale):
  runs = []
  for repeats in (1, 2, 3, 4):
    config = base_config(scale)
    if scale == "paper":
      config.model.update(get_config("mobilellm_125m").model.to_dict())
      config.tracking.paper_params = 124_635_456
    config.model.update(layer_sharing="none" if repeats == 1 else "immediate", share_repeats=repeats)
    config.tracking.label = f"{repeats}x"
    runs.append(config)
  return with_seeds(runs, THREE_SEEDS if scale == "cpu" else (0,))
