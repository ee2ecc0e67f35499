"""The paper's ablation ladder (Table: 125M 42.6 -> 43.9 -> 44.8 -> 44.6 -> 45.0 -> 46.1):
baseline (FC-ReLU-FC, 12-layer style) -> + SwiGLU -> + deep and thin -> + embedding sharing ->
+ GQA (wider to keep the size) -> + immediate layer sharing."""

from mobilellm_jax.configs import get_config
from mobilellm_jax.model.counting import param_counts
from mobilellm_jax.runner.sweeps import base_config, matched_model, THREE_SEEDS, with_seeds

DESCRIPTION = "each step of the paper's ladder, one change at a time"
HEADLINE = "label"
PLOT = "bars"
VERDICTS = "ablation_ladder"
# Each run's label -> the step of the paper's ladder it reproduces (analysis/paper.py).
PAPER_STEPS = {"1 baseline": "baseline", "2 + SwiGLU": "swiglu",
               "3 + deep and thin": "deep_thin", "4 + embedding sharing": "embedding_sharing",
               "5 + GQA, wider": "gqa", "5 + GQA (MobileLLM)": "gqa",
               "6 + layer sharing": "layer_sharing",
               "6 + layer sharing (MobileLLM-LS)": "layer_sharing"}

# cpu analogue at 2.6M untied: shallow-wide 2 layers -> deep-thin 8 layers (the width solver).


def _step(scale, label, **model):
  config = base_config(scale)
  config.model.update(model)
  config.tracking.label = label
  return config


def get_runs(scale):
  if scale == "paper":
    base = get_config("baseline_125m").model.to_dict()
    mobile = get_config("mobilellm_125m").model.to_dict()
    deep = dict(base, num_layers=30, dim=512, num_heads=8, num_kv_heads=8, ffn_dim=1536)
    # Steps 5 and 6 are the released MobileLLM-125M and -LS (30 x 576, 9/3 heads). The paper
    # states the sizes of steps 3-6 (its embedding-sharing table and model cards), not of 1-2.
    steps = [
        ("1 baseline", base, 0),
        ("2 + SwiGLU", dict(base, ffn_type="swiglu", ffn_dim=2048), 0),
        ("3 + deep and thin", dict(deep, ffn_type="swiglu"), 135_000_000),
        ("4 + embedding sharing", dict(deep, ffn_type="swiglu", tie_embeddings=True), 119_000_000),
        ("5 + GQA (MobileLLM)", mobile, 124_635_456),
        ("6 + layer sharing (MobileLLM-LS)", dict(mobile, layer_sharing="immediate",
                                                  share_repeats=2), 124_635_456),
    ]
    runs = []
    for label, model, paper_params in steps:
      runs.append(_step(scale, label, **model))
      runs[-1].tracking.paper_params = paper_params
    return runs

  budget, shallow, deep_layers = {"smoke": (100_000, 2, 4), "cpu": (2_600_000, 2, 8)}[scale]
  # Steps 1-3 hold the untied size; step 4 ties (fewer parameters); step 5 trades KV heads for
  # width at step 4's size; step 6 shares layers (same parameters, twice the depth).
  base = matched_model(base_config(scale), scale, budget, shallow, ffn_type="relu", ffn_ratio=4.0,
                       tie_embeddings=False).model.to_dict()
  swiglu = dict(base, ffn_type="swiglu", ffn_dim=8 * base["dim"] // 3 // 8 * 8)  # 3 x 8/3 = 2 x 4
  deep = matched_model(base_config(scale), scale, budget, deep_layers,
                       tie_embeddings=False).model.to_dict()
  tied = dict(deep, tie_embeddings=True)
  gqa = matched_model(base_config(scale), scale, param_counts(_as_ns(tied))["params"], deep_layers,
                      heads_per_kv=2, tie_embeddings=True).model.to_dict()
  steps = [("1 baseline", base), ("2 + SwiGLU", swiglu), ("3 + deep and thin", deep),
           ("4 + embedding sharing", tied), ("5 + GQA, wider", gqa),
           ("6 + layer sharing", dict(gqa, layer_sharing="immediate", share_repeats=2))]
  runs = [_step(scale, label, **model) for label, model in steps]
  for config in runs:
    config.tracking.param_budget = budget
  return with_seeds(runs, THREE_SEEDS if scale == "cpu" else (0,))


def _as_ns(model: dict):
  return type("Model", (), model)
