"""The matmul floor of a training step: the time of the step's projection matmuls alone, each
timed on its own at its real shape and transposition, in XLA and in PyTorch; beside it, both full
steps timed in the same process.

    python bench/matmul_floor.py                 # cpu default, 24-layer thin, 125M
    python bench/matmul_floor.py --sizes cpu --reps 30

A step cannot be faster than its matmuls. So `torch step / XLA floor` is the most our step could
beat PyTorch's by with XLA's matmuls, if everything else in it (attention, norms, the scan, the
optimizer) cost nothing. The floor leaves attention's score and value matmuls out (they live in
the attention kernel), which only makes that ceiling higher than the real one.

Per block: the fused q/k/v projection, the output projection and the FFN (gate, up, down, or up,
down for ReLU), times the effective depth. Each is three matmuls: forward x @ w [T, I] x [I, O],
input gradient dy @ w^T [T, O] x [O, I] (w read transposed) and weight gradient x^T @ dy
[I, T] x [T, O] (x read transposed), T = batch x sequence tokens. The head runs as the loss
does (losses.py): per chunk of C tokens, logits h @ head^T [C, D] x [V, D]^T, dh = dlogits @ head
[C, V] x [V, D] and the weight gradient as [D, C] x [C, V] (dense.wide_weight_grad transposes h
first; that copy is left out, as is everything else that is not a matmul).
"""

import argparse
import collections
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from mobilellm_jax.model import counting
from mobilellm_jax.ops import losses
from mobilellm_jax.training import host_memory
from mobilellm_jax.configs import get_config
from mobilellm_jax.model import ModelArgs
from train_throughput import SIZES, ours, reference, timed

# (lhs shape, rhs shape, lhs transposed, rhs transposed) -> how many per step
Matmuls = collections.Counter


def step_matmuls(config, batch: int, seq: int) -> Matmuls:
  """Every projection matmul of one forward + backward step, with its multiplicity."""
  args, tokens = ModelArgs.from_config(config.model), batch * seq
  hd = args.head_dim
  projections = [(args.dim, (args.num_heads + 2 * args.num_kv_heads) * hd),
                 (args.num_heads * hd, args.dim)]
  ffn = config.model.ffn_dim
  if config.model.ffn_type == "swiglu":
    projections += [(args.dim, ffn), (args.dim, ffn), (ffn, args.dim)]
  else:
    projections += [(args.dim, ffn), (ffn, args.dim)]
  depth = counting.effective_depth(config.model)
  matmuls = Matmuls()
  for fan_in, fan_out in projections:
    matmuls[((tokens, fan_in), (fan_in, fan_out), False, False)] += depth  # x @ w
    matmuls[((tokens, fan_out), (fan_in, fan_out), False, True)] += depth  # dy @ w^T
    matmuls[((tokens, fan_in), (tokens, fan_out), True, False)] += depth  # x^T @ dy
  D, V = args.dim, config.model.vocab_size
  chunk = losses.chunk_length(batch, seq, V, dim=D)
  rows, chunks = batch * chunk, seq // chunk
  matmuls[((rows, D), (V, D), False, True)] += chunks  # logits = h @ head^T
  matmuls[((rows, V), (V, D), False, False)] += chunks  # dh = dlogits @ head
  matmuls[((D, rows), (rows, V), False, False)] += chunks  # dhead^T = (h^T) @ dlogits
  return matmuls


def flop(key) -> int:
  (lhs, rhs, lhs_t, rhs_t) = key
  m, k = lhs[::-1] if lhs_t else lhs
  n = rhs[0] if rhs_t else rhs[1]
  return 2 * m * k * n


def best_seconds(fn, reps: int) -> float:
  fn()
  best = float("inf")
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def xla_seconds(key, reps: int) -> float:
  lhs, rhs, lhs_t, rhs_t = key
  contract = (((0,) if lhs_t else (1,)), ((1,) if rhs_t else (0,)))
  f = jax.jit(lambda a, b: jax.lax.dot_general(a, b, (contract, ((), ()))))
  a = jnp.asarray(np.random.default_rng(0).standard_normal(lhs, np.float32))
  b = jnp.asarray(np.random.default_rng(1).standard_normal(rhs, np.float32))
  return best_seconds(lambda: f(a, b).block_until_ready(), reps)


def torch_seconds(key, reps: int) -> float:
  lhs, rhs, lhs_t, rhs_t = key
  a, b = torch.randn(*lhs), torch.randn(*rhs)
  with torch.no_grad():
    return best_seconds(lambda: torch.mm(a.t() if lhs_t else a, b.t() if rhs_t else b), reps)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="cpu,deep24,125m", help=f"comma list of {list(SIZES)}")
  parser.add_argument("--reps", type=int, default=20, help="timings per matmul (best is kept)")
  parser.add_argument("--steps", type=int, default=3, help="full steps per round, each framework")
  parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of full steps")
  parser.add_argument("--verbose", action="store_true", help="print every matmul")
  args = parser.parse_args()
  for name in args.sizes.split(","):
    if name not in SIZES:
      parser.error(f"unknown size {name!r}; known: {', '.join(SIZES)}")
  if jax.default_backend() != "cpu":
    raise SystemExit("matmul_floor.py compares with PyTorch on the CPU; run it on a CPU backend")
  print(f"jax {jax.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
  for name in args.sizes.split(","):
    preset, overrides, batch, seq = SIZES[name]
    config = get_config(preset)
    config.model.update(overrides)
    matmuls = step_matmuls(config, batch, seq)
    xla = torch_mm = total_flop = 0.0
    for key, count in sorted(matmuls.items(), key=lambda kv: -flop(kv[0]) * kv[1]):
      x, t = xla_seconds(key, args.reps), torch_seconds(key, args.reps)
      xla, torch_mm, total_flop = xla + count * x, torch_mm + count * t, total_flop + count * flop(key)
      if args.verbose:
        lhs, rhs, lhs_t, rhs_t = key
        print(f"    {count:3d} x {lhs}{'^T' if lhs_t else ''} @ {rhs}{'^T' if rhs_t else ''}: "
              f"XLA {flop(key) / x / 1e9:6.1f} GFLOP/s, torch {flop(key) / t / 1e9:6.1f}")
    steps = max(1, args.steps // 3) if name == "125m" else args.steps
    runners = {"ours": ours(config, batch, seq), "torch": reference(config, batch, seq)}
    best = {}
    for run in runners.values():
      run()
    for _ in range(args.rounds):
      for key, run in runners.items():
        best[key] = min(best.get(key, float("inf")), timed(run, steps))
    print(f"{name:>7}: {total_flop / 1e9:.1f} GFLOP of projection matmuls per step; matmuls alone "
          f"XLA {xla * 1e3:.0f} ms ({total_flop / xla / 1e9:.0f} GFLOP/s), torch "
          f"{torch_mm * 1e3:.0f} ms ({total_flop / torch_mm / 1e9:.0f} GFLOP/s); full step ours "
          f"{best['ours'] * 1e3:.0f} ms, torch {best['torch'] * 1e3:.0f} ms; "
          f"ceiling torch step / XLA floor {best['torch'] / xla:.2f}x "
          f"(now {best['torch'] / best['ours']:.2f}x)", flush=True)


if __name__ == "__main__":
  host_memory.keep_freed_memory()  # as the CLIs do (runtime.py): XLA:CPU reuses freed buffers
  main()
