"""Exact parameter and FLOP counts from a model config, and the width solver for parameter matching.

Counting convention (the paper's): a tied embedding is counted once; "non-embedding" excludes the
vocab x dim table (and a separate head, when untied). RMSNorm scales are counted.

FLOPs convention (PaLM, Chowdhery et al. 2022, appendix B): per trained token,
    6 * N_matmul + 12 * L_eff * H * E * T
where N_matmul = L_eff * (attention + FFN matrices) + D * V (the output head; the input embedding
is a lookup, not a matmul), L_eff is the effective depth (layer sharing runs blocks again, so it
costs compute but no parameters), and T is the sequence length. The attention term counts QK^T and
AV over the full T x T square: causal masking is NOT halved. Norms, RoPE, softmax and the optimizer
are not counted. Forward-only FLOPs are one third of this.
"""

import argparse
import dataclasses
import json
import math
import sys

from mobilellm_jax.model.sharing import layer_schedule


def effective_depth(m) -> int:
  return len(layer_schedule(m.num_layers, m.layer_sharing, m.share_repeats))


def _block_matmul_params(m) -> int:
  head_dim = m.dim // m.num_heads
  attention = 2 * m.dim * m.num_heads * head_dim + 2 * m.dim * m.num_kv_heads * head_dim
  ffn = (3 if m.ffn_type == "swiglu" else 2) * m.dim * m.ffn_dim
  return attention + ffn


def param_counts(m) -> dict:
  """Exact counts for a model config (config.model or ModelArgs)."""
  block = _block_matmul_params(m) + 2 * m.dim  # + the two RMSNorm scales
  embedding = m.vocab_size * m.dim * (1 if m.tie_embeddings else 2)
  non_embedding = m.num_layers * block + m.dim  # + the final norm
  return dict(params=embedding + non_embedding, non_embedding_params=non_embedding,
              embedding_params=embedding, block_params=block)


def flops_per_token(m, seq_len: int) -> int:
  """Training (forward + backward) FLOPs per token; see the module docstring for the convention."""
  depth = effective_depth(m)
  matmul_params = depth * _block_matmul_params(m) + m.dim * m.vocab_size
  return 6 * matmul_params + 12 * depth * m.dim * seq_len  # H * E == dim


# --- parameter matching ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ShapeRules:
  """How width sets the rest of the shape: heads = dim / head_dim, kv heads = heads /
  heads_per_kv, FFN hidden = ffn_ratio * dim rounded up to a multiple of ffn_multiple (LLaMA's
  rule, which reproduces every MobileLLM preset). dim moves in steps of head_dim * heads_per_kv."""
  vocab_size: int = 32000
  head_dim: int = 64
  heads_per_kv: int = 3
  ffn_type: str = "swiglu"
  ffn_ratio: float = 8 / 3
  ffn_multiple: int = 256
  tie_embeddings: bool = True

  def shape(self, dim: int, num_layers: int) -> dict:
    """The model fields for one width and depth."""
    heads = dim // self.head_dim
    ffn_dim = self.ffn_multiple * math.ceil(round(self.ffn_ratio * dim, 6) / self.ffn_multiple)
    return dict(vocab_size=self.vocab_size, dim=dim, num_layers=num_layers, num_heads=heads,
                num_kv_heads=heads // self.heads_per_kv, ffn_type=self.ffn_type, ffn_dim=ffn_dim,
                tie_embeddings=self.tie_embeddings, layer_sharing="none", share_repeats=1)


@dataclasses.dataclass(frozen=True)
class WidthSolution:
  shape: dict  # model fields (dim, heads, kv heads, ffn_dim, ...)
  params: int  # total parameters, tied embedding counted once
  deviation: float  # (params - budget) / budget


def _count(shape: dict) -> int:
  return param_counts(argparse.Namespace(**shape))["params"]


def solve_width(budget: int, num_layers: int, rules: ShapeRules = ShapeRules(),
                max_dim: int = 16384, ffn_tolerance: float = 0.0) -> WidthSolution:
  """The shape whose total parameter count is closest to `budget` at this depth.

  ffn_tolerance = 0: the width on the rules' grid, FFN by the rule (the paper's released shapes).
  ffn_tolerance > 0: small budgets make that grid coarse (10-20% apart), so the FFN hidden size
  (a multiple of ffn_multiple) also moves to absorb the remainder, staying within
  +-ffn_tolerance of ffn_ratio * dim; among widths that reach the budget equally well, the one
  whose FFN ratio is closest to the rule wins.
  """
  if budget <= 0 or num_layers <= 0:
    raise ValueError(f"budget and num_layers must be positive, got {budget}, {num_layers}")
  step = rules.head_dim * rules.heads_per_kv
  candidates = []
  for dim in range(step, max_dim + 1, step):
    shape = rules.shape(dim, num_layers)
    candidates.append(shape)
    if _count(shape) > budget * (1 + ffn_tolerance * 3):  # nothing wider can come closer
      break
  if ffn_tolerance > 0:
    candidates = [_fit_ffn(shape, budget, rules, ffn_tolerance) for shape in candidates]

  def badness(shape):
    ratio_error = abs(shape["ffn_dim"] / shape["dim"] - rules.ffn_ratio)
    return (abs(_count(shape) - budget), ratio_error)
  best = min(candidates, key=badness)
  params = _count(best)
  return WidthSolution(best, params, (params - budget) / budget)


def _fit_ffn(shape: dict, budget: int, rules: ShapeRules, tolerance: float) -> dict:
  """The shape with the FFN hidden size (within the tolerance band) that best meets the budget."""
  per_unit = (3 if rules.ffn_type == "swiglu" else 2) * shape["dim"] * shape["num_layers"]
  base = _count(dict(shape, ffn_dim=0))
  target = rules.ffn_ratio * shape["dim"]
  low = max(rules.ffn_multiple, math.ceil(target * (1 - tolerance) / rules.ffn_multiple) * rules.ffn_multiple)
  high = max(low, math.floor(target * (1 + tolerance) / rules.ffn_multiple) * rules.ffn_multiple)
  ideal = round((budget - base) / per_unit / rules.ffn_multiple) * rules.ffn_multiple
  return dict(shape, ffn_dim=min(max(ideal, low), high))


# --- CLI ------------------------------------------------------------------------------------

def summarize(config) -> dict:
  """Counts and FLOPs for a full config, as the CLI prints them."""
  m = config.model
  return dict(preset=config.preset, **param_counts(m),
              flops_per_token=flops_per_token(m, config.data.seq_len), seq_len=config.data.seq_len,
              num_layers=m.num_layers, effective_depth=effective_depth(m), dim=m.dim,
              num_heads=m.num_heads, num_kv_heads=m.num_kv_heads, ffn_dim=m.ffn_dim,
              layer_sharing=m.layer_sharing, share_repeats=m.share_repeats)


def main(argv=None) -> int:
  from mobilellm_jax.configs import get_config, validate  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(description="Exact parameter and FLOP counts of a preset.")
  parser.add_argument("--preset", default="cpu")
  parser.add_argument("--seq_len", type=int, default=0, help="override data.seq_len for FLOPs")
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  args = parser.parse_args(argv)
  try:
    config = get_config(args.preset)
    if args.seq_len:
      config.data.seq_len = args.seq_len
    validate(config)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  summary = summarize(config)
  if args.json:
    print(json.dumps(summary))
  else:
    for key, value in summary.items():
      print(f"{key:>22}: {value:,}" if isinstance(value, int) else f"{key:>22}: {value}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
