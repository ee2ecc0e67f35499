"""Depth vs width at a fixed parameter budget (the paper's Section 2.2.2 / Fig. 4)."""

from mobilellm_jax.sweeps import base_config, matched_model

DESCRIPTION = "parameter-matched depths at one budget: does deep-and-thin beat wide-and-shallow?"
HEADLINE = "num_layers"
NOTE = ("cpu: 6 depths x 2 seeds x 300k tokens at 2M params on the embedded corpus; measured 47 min "
        "on 2 cores shared with other jobs (2026-11-28), est. 25-30 min alone; the deep end dominates "
        "the wall time. More tokens per parameter: depth_vs_tokens.")

# The paper's grids (layers -> dim), ~125M and ~350M, head_dim 64, multi-head, SwiGLU 8/3.
PAPER_GRIDS = {124_635_456: {4: 1280, 12: 768, 18: 640, 24: 576, 30: 512, 42: 448, 62: 384},
               345_355_200: {5: 2048, 15: 1280, 32: 896, 46: 768, 66: 640}}
CPU_DEPTHS = (1, 2, 4, 8, 16, 32)  # a doubling grid on which the width solver lands within 1%
CPU_BUDGET = 2_000_000
CPU_TOKENS = 300_000  # per run: what 2 cores train 12 runs on in ~25 minutes


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
                           "cpu": (CPU_BUDGET, CPU_DEPTHS, (0, 1))}[scale]
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
