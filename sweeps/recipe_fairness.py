"""Is one training recipe fair to every shape? Peak learning rate and initialisation at the
shallowest, a middle and the deepest depth of the cpu depth grid, all at the same parameters and
tokens. The paper uses one learning rate for every shape; a recipe that favours one end of the grid
would decide the depth-vs-width verdict by itself."""

from mobilellm_jax.runner.sweeps import base_config, matched_model, THREE_SEEDS, with_seeds

DESCRIPTION = "peak LR x init scheme at the grid's shallowest, middle and deepest depth"
HEADLINE = "label"
PLOT = "bars"
VERDICTS = "recipe_fairness"
NOTE = ("cpu: 3 depths x 9 recipes x 1M tokens at 2M params; three seeds for the best recipe at "
        "each depth and its closest rival, one elsewhere; the 32-layer runs take most of the time.")

# (init scheme, peak LR) in the order they run: the paper's init (a fixed std of 0.02, small
# beside 1/sqrt(dim) at dim 64-288) at the rate the cpu scale first used, the depth-aware init
# (the cpu scale's recipe since this study) and plain 1/sqrt(fan_in) at the same rate, then the
# depth-aware init at 2x and 4x the rate (it was better at 2x), then at half, then the paper's
# init at half, twice and four times the rate (its 32-layer model still gained at twice).
RECIPES = (("fixed", 3e-3), ("fan_in_depth", 3e-3), ("fan_in", 3e-3), ("fan_in_depth", 6e-3),
           ("fan_in_depth", 1.2e-2), ("fan_in_depth", 1.5e-3), ("fixed", 1.5e-3), ("fixed", 6e-3),
           ("fixed", 1.2e-2))
# cpu: (init scheme, peak LR, depth) run with three seeds: the best recipe at each depth and
# its closest rival, so the best LR per depth is judged against the seed spread.
SEEDED = {("fan_in_depth", 6e-3, 1), ("fan_in_depth", 3e-3, 1), ("fan_in_depth", 6e-3, 8),
          ("fan_in_depth", 6e-3, 32), ("fan_in_depth", 1.2e-2, 32)}


def get_runs(scale):
  if scale == "paper":
    budget, depths, tokens = 124_635_456, (4, 30, 62), 25_000_000_000
  elif scale == "cpu":
    budget, depths, tokens = 2_000_000, (8, 32, 1), 1_000_000
  else:
    budget, depths, tokens = 60_000, (1, 4), 2048
  runs = []
  for init_scheme, peak_lr in RECIPES:
    for depth in depths:
      config = matched_model(base_config(scale), scale, budget, depth)
      config.model.init_scheme = init_scheme
      config.optim.peak_lr = peak_lr * (2e-3 / 3e-3 if scale == "paper" else 1)
      config.train.update(num_steps=0, num_tokens=tokens)
      config.tracking.update(
          label=f"{depth}L {init_scheme} lr {config.optim.peak_lr:g}",
          run_name=f"L{depth}-d{config.model.dim}-{init_scheme}-lr{config.optim.peak_lr:g}")
      seeded = scale == "cpu" and (init_scheme, peak_lr, depth) in SEEDED
      runs += with_seeds([config], THREE_SEEDS if seeded else (0,))
  return runs
