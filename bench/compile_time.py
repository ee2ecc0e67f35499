"""Compile time of the training loss's forward + backward against effective depth, scan on and off.

    python bench/compile_time.py [--preset cpu] [--depths 6,30,60] [--batch 8] [--seq 256] \
        [--strategies none,immediate,repeat_all,reverse] [--scan true,false]

Prints one line per (depth, sharing, scan) with the lower and compile seconds. With scan the
compiled program holds one block per pass whatever the depth, so compile time should stay flat.
"""

import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

from mobilellm_jax.training import host_memory, step as train_step
from mobilellm_jax.configs import get_config
from mobilellm_jax.model import build_model


def compile_seconds(model_config, batch: int, seq: int) -> tuple[float, float]:
  graphdef, state = nnx.split(nnx.eval_shape(lambda: build_model(model_config)))

  tokens = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
  batch_spec = {"inputs": tokens, "targets": tokens}
  start = time.perf_counter()
  lowered = jax.jit(jax.value_and_grad(train_step.loss_fn), static_argnums=1,
                    compiler_options=train_step.compiler_options()).lower(
      state, graphdef, batch_spec)
  lowered_at = time.perf_counter()
  lowered.compile()
  return lowered_at - start, time.perf_counter() - lowered_at


def main():
  jax.config.update("jax_enable_compilation_cache", False)  # measure compiles, not cache loads
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="cpu")
  parser.add_argument("--depths", default="6,30,60", help="effective depths")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--strategies", default="none,immediate,repeat_all,reverse",
                      help="sharing strategies (2 repeats) tried at each depth")
  parser.add_argument("--scan", default="true,false", help="scan settings to try")
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; preset {args.preset}, "
        f"batch {args.batch} x seq {args.seq}; forward + backward of the trainer's loss")
  print(f"{'eff.depth':>9} {'blocks':>6} {'sharing':>11} {'scan':>5} {'lower_s':>8} {'compile_s':>9}")
  for depth in map(int, args.depths.split(",")):
    for strategy in args.strategies.split(","):
      repeats = 1 if strategy == "none" else 2
      if depth % repeats:
        continue
      for scan in (v == "true" for v in args.scan.split(",")):
        m = get_config(args.preset).model
        m.update(num_layers=depth // repeats, layer_sharing=strategy, share_repeats=repeats,
                 scan_layers=scan, unroll_max_depth=0)  # scan at every depth when asked
        lower_s, compile_s = compile_seconds(m, args.batch, args.seq)
        print(f"{depth:>9} {depth // repeats:>6} {strategy:>11} {str(scan):>5} {lower_s:>8.2f} "
              f"{compile_s:>9.2f}", flush=True)


if __name__ == "__main__":
  host_memory.keep_freed_memory()  # as the CLIs do (runtime.py): XLA:CPU reuses freed buffers
  main()
