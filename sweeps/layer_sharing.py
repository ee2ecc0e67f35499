"""Layer-sharing strategies at 2 repeats over the same unique blocks (the paper's Table: 350M
none 49.6 / immediate 50.2 / repeat-all 50.7 / reverse 50.1)."""

from mobilellm_jax.configs import get_config
from mobilellm_jax.runner.sweeps import base_config, THREE_SEEDS, with_seeds

DESCRIPTION = "none / immediate / repeat_all / reverse at 2 repeats: same parameters, 2x depth"
HEADLINE = "label"
PLOT = "bars"
VERDICTS = "layer_sharing"
STRATEGIES = (("none", 1), ("immediate", 2), ("repeat_all", 2), ("reverse", 2))


def get_runs(scale):
  runs = []
  for strategy, repeats in STRATEGIES:
    config = base_config(scale)
    if scale == "paper":
      config.model.update(get_config("mobilellm_350m").model.to_dict())
      config.tracking.paper_params = 345_355_200
    config.model.update(layer_sharing=strategy, share_repeats=repeats)
    config.tracking.label = strategy if strategy == "none" else f"{strategy} x{repeats}"
    runs.append(config)
  return with_seeds(runs, THREE_SEEDS if scale == "cpu" else (0,))
