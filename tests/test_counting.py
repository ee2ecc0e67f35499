"""Exact parameter counts (the paper's), FLOPs against a hand-derived closed form, width solver."""

import json
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from mobilellm_jax.configs import get_config
from mobilellm_jax.model.counting import (ShapeRules, effective_depth, flops_per_token,
                                          param_counts, solve_width)
from mobilellm_jax.model import build_model

PAPER = {  # ../shared/PAPER.md: exact totals with tied embeddings, and non-embedding counts
    "mobilellm_125m": (124_635_456, 106_203_456),
    "mobilellm_350m": (345_355_200, 314_635_200),
    "mobilellm_600m": (603_188_352, 566_324_352),
    "mobilellm_1b": (1_005_461_760, 964_501_760),
    "mobilellm_1_5b": (1_511_188_800, 1_459_988_800),
}


@pytest.mark.parametrize("preset", sorted(PAPER))
def test_paper_parameter_counts_exact(preset):
  counts = param_counts(get_config(preset).model)
  assert (counts["params"], counts["non_embedding_params"]) == PAPER[preset]


def test_layer_sharing_adds_depth_not_parameters():
  plain, shared = get_config("mobilellm_125m").model, get_config("mobilellm_125m_ls").model
  assert param_counts(plain) == param_counts(shared)
  assert (effective_depth(plain), effective_depth(shared)) == (30, 60)


def _built_count(model_config):
  model = nnx.eval_shape(lambda: build_model(model_config))
  return sum(int(np.prod(x.shape)) for x in __import__("jax").tree.leaves(nnx.state(model, nnx.Param)))


def test_analytic_count_equals_built_model_for_random_configs():
  rng = np.random.default_rng(0)
  for _ in range(8):
    m = get_config("smoke").model
    kv = int(rng.choice([1, 2, 4]))
    heads = kv * int(rng.integers(1, 4))
    m.update(vocab_size=int(rng.integers(2, 500)), num_heads=heads, num_kv_heads=kv,
             dim=heads * 2 * int(rng.integers(1, 9)), num_layers=int(rng.integers(1, 7)),
             ffn_dim=int(rng.integers(1, 300)), ffn_type=str(rng.choice(["swiglu", "relu"])),
             tie_embeddings=bool(rng.integers(0, 2)))
    assert param_counts(m)["params"] == _built_count(m), m


def test_paper_125m_built_count():
  assert _built_count(get_config("mobilellm_125m").model) == 124_635_456


def test_flops_closed_form_125m():
  # By hand for 125M (L=30, D=576, H=9, K=3, E=64, F=1536, V=32000, T=2048), PaLM convention:
  # per layer: q,o 2*576*576 + k,v 2*576*192 + SwiGLU 3*576*1536 = 3,538,944 matmul params
  # N_matmul = 30 * 3,538,944 + 576 * 32000 = 124,600,320;  6 N = 747,601,920
  # attention: 12 * 30 * 576 * 2048 = 424,673,280  ->  total 1,172,275,200 per token
  assert flops_per_token(get_config("mobilellm_125m").model, 2048) == 1_172_275_200
  # immediate sharing x2 doubles the block terms, not the head: 6*(60*3,538,944 + 18,432,000)
  # + 12*60*576*2048 = 1,384,611,840 + 849,346,560
  assert flops_per_token(get_config("mobilellm_125m_ls").model, 2048) == 2_233_958_400


def test_flops_relu_ffn_uses_two_matrices():
  m = get_config("smoke").model  # D=64, H=4, K=2, E=16, F=128, V=512, L=2
  attn = 2 * 64 * 64 + 2 * 64 * 32
  swiglu = 6 * (2 * (attn + 3 * 64 * 128) + 64 * 512) + 12 * 2 * 64 * 32
  assert flops_per_token(m, 32) == swiglu
  m.ffn_type = "relu"
  assert flops_per_token(m, 32) == swiglu - 6 * 2 * 64 * 128


@pytest.mark.parametrize("preset", sorted(PAPER))
def test_solver_recovers_each_preset_width(preset):
  m = get_config(preset).model
  rules = ShapeRules(heads_per_kv=m.num_heads // m.num_kv_heads)
  solution = solve_width(PAPER[preset][0], m.num_layers, rules)
  assert solution.shape["dim"] == m.dim and solution.shape["ffn_dim"] == m.ffn_dim
  assert solution.deviation == 0.0


def test_solver_on_the_papers_depth_grid():
  # Multi-head attention, head_dim 64, LLaMA FFN rule. The paper does not print its exact counts;
  # 9 of its 12 grid points come out exactly, the rest one width step (64) away.
  rules = ShapeRules(heads_per_kv=1)
  grids = {124_635_456: {4: 1280, 12: 768, 18: 640, 24: 576, 30: 512, 42: 448, 62: 384},
           345_355_200: {5: 2048, 15: 1280, 32: 896, 46: 768, 66: 640}}
  exact = 0
  for budget, grid in grids.items():
    for depth, paper_dim in grid.items():
      solution = solve_width(budget, depth, rules)
      assert abs(solution.shape["dim"] - paper_dim) <= 64, (budget, depth, solution)
      exact += solution.shape["dim"] == paper_dim
      # closest on the grid: one step narrower or wider is no closer
      for other in (solution.shape["dim"] - 64, solution.shape["dim"] + 64):
        params = param_counts(type("M", (), rules.shape(other, depth)))["params"]
        assert abs(params - budget) >= abs(solution.params - budget)
  assert exact == 9


def test_solver_deeper_means_thinner():
  dims = [solve_width(2_000_000, depth, ShapeRules(vocab_size=4096, head_dim=32, heads_per_kv=1,
                                                   ffn_multiple=32)).shape["dim"]
          for depth in (2, 4, 8, 16, 32)]
  assert dims == sorted(dims, reverse=True) and dims[0] > dims[-1]


def test_counting_cli_json():
  out = subprocess.run([sys.executable, "-m", "mobilellm_jax.model.counting", "--preset",
                        "mobilellm_125m_ls", "--json"], capture_output=True, text=True, check=True)
  result = json.loads(out.stdout)
  assert result["params"] == 124_635_456 and result["non_embedding_params"] == 106_203_456
  assert (result["num_layers"], result["effective_depth"]) == (30, 60)
  assert result["flops_per_token"] == 2_233_958_400


def test_counting_cli_rejects_unknown_preset():
  out = subprocess.run([sys.executable, "-m", "mobilellm_jax.model.counting", "--preset", "nope"],
                       capture_output=True, text=True)
  assert out.returncode == 2 and "known presets" in out.stderr
