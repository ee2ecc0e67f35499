"""Embedding sharing (the paper at 125M: 30 layers untied 135M 44.8; tied 119M 44.6; tied + 32
layers 125M 45.0): untied N layers / tied N layers / tied with the saved parameters spent on depth."""

from mobilellm_jax.model.counting import param_counts
from mobilellm_jax.runner.sweeps import base_config, THREE_SEEDS, with_seeds

DESCRIPTION = "untied / tied / tied + the saved parameters spent on more layers"
HEADLINE = "label"
PLOT = "bars"
VERDICTS = "embedding_sharing"


def get_runs(scale):
  base = base_config(scale)
  if scale == "paper":
    base.model.update(num_layers=30, dim=512, num_heads=8, num_kv_heads=8, ffn_dim=1536)
  untied = base_config(scale)
  untied.model.update(base.model.to_dict() | dict(tie_embeddings=False))
  untied.tracking.label = f"untied {base.model.num_layers}L"
  tied = base_config(scale)
  tied.model.update(base.model.to_dict() | dict(tie_embeddings=True))
  tied.tracking.label = f"tied {base.model.num_layers}L"
  # Spend the saved vocab x dim parameters on extra blocks: as many as fit in the untied count
  # (at least one, so the step exists at every scale). The paper spends them on 32 layers (125M).
  budget = param_counts(untied.model)["params"]
  deeper = base_config(scale)
  deeper.model.update(tied.model.to_dict())
  counts = param_counts(deeper.model)
  deeper.model.num_layers += max(1, (budget - counts["params"]) // counts["block_params"])
  if scale == "paper":
    deeper.model.num_layers = 32
  deeper.tracking.label = f"tied {deeper.model.num_layers}L"
  for config in (untied, tied, deeper):
    config.tracking.param_budget = budget
  if scale == "paper":
    for config, paper_params in zip((untied, tied, deeper), (135_000_000, 119_000_000, 125_000_000)):
      config.tracking.paper_params = paper_params
  return with_seeds([untied, tied, deeper], THREE_SEEDS if scale == "cpu" else (0,))
