"""Depth vs width at a fixed parameter budget (the paper's Section 2.2.2 / Fig. 4)."""

from mobilellm_jax.runner.sweeps import base_config, matched_model

DESCRIPTION = "parameter-matched depths at one budget: does deep-and-thin beat wide-and-shallow?"
HEADLINE = "num_layers"
PLOT = "depth"
VERDICTS = "depth_vs_width"
NOTE = ("cpu: 4 depths x 3 seeds x 1M tokens at 2M params (0.5 tokens/param) on the embedded "
        "corpus, the cpu recipe. The budget comes from depth_vs_tokens: from 0.5M to 4M tokens the "
        "best depth stays at 4 and its lead over 2 layers grows from 0.10 to 0.21 nats, while a run "
        "still fits the ~30-minute main job (measured 32 min on 2 cores shared with other jobs). "
        "The paper trains ~2,000 tokens/param.")

# The paper's grids (layers -> dim), ~125M and ~350M, head_dim 64, multi-head, SwiGLU 8/3.
PAPER_GRIDS = {124_635_456: {4: 1280, 12: 768, 18: 640, 24: 576, 30: 512, 42: 448, 62: 384},
               345_355_200: {5: 2048, 15: 1280, 32: 896, 46: 768, 66: 640}}
# Depths 1 and 32 lose at every budget depth_vs_tokens measured (1: 59% of the parameters in the
# embedding; 32: a 64-wide residual stream), so the main job spends its time on seeds instead.
CPU_DEPTHS = (2, 4, 8, 16)  # a doubling grid on which the width solver lands within 1%
CPU_BUDGET = 2_000_000
CPU_TOKENS = 1_000_000  # per run: where depth_vs_tokens already shows the best depth
CPU_SEEDS = (0, 1, 2)


def get_runs(scale):
  if scale == "paper":
    runs = []
    for budget, grid in PAPER_GRIDS.items():
      for layers, dim in grid.items():
        config = base_config(scale)
        heads = dim // 64
        config.model.update(num_layers=layers, dim=dim, num_heads=heads, num_kv_heads=heads,
                            ffn_dim=256 * -(-(8 * dim // 3) // 256))
        config.tracking.update(param_budget=budget, label=f"{budget // 1_000_000}M {layers}L")
        runs.append(config)
    return runs
  budget, depths, seeds = {"smoke": (60_000, (1, 2, 4), (0,)),
                           "cpu": (CPU_BUDGET, CPU_DEPTHS, CPU_SEEDS)}[scale]
  runs = []
  for depth in depths:
    for seed in seeds:
      config = matched_model(base_config(scale), scale, budget, depth)
      config.train.seed = seed
      if scale == "cpu":
        config.train.num_tokens = CPU_TOKENS
      config.tracking.label = f"{depth}L"
      runs.append(config)
  return runs
