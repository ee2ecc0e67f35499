"""Training throughput: our train step (the trainer's own step function, AdamW included) against
`transformers.LlamaForCausalLM` + `torch.optim.AdamW` on the same architecture, batch and sequence,
in one process, alternating; plus MFU against the matmul peak measured in the same run.

    python bench/train_throughput.py                       # cpu default, 24-layer thin, 125M (few steps)
    python bench/train_throughput.py --sizes cpu --steps 10

Prints one line per size: tokens/s for both, the ratio, and our MFU. Single device (no mesh).
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers
from flax import nnx

from mobilellm_jax import counting, flops, train_step
from mobilellm_jax.configs import get_config
from mobilellm_jax.hf import hf_config_dict
from mobilellm_jax.model import ModelArgs, build_model
from mobilellm_jax.optim import lr_schedule, make_optimizer

SIZES = {  # name -> (preset, model overrides, batch, seq)
    "cpu": ("cpu", {}, 16, 256),
    "deep24": ("cpu", dict(num_layers=24, dim=96, num_heads=3, num_kv_heads=3, ffn_dim=256), 16, 256),
    "125m": ("mobilellm_125m", dict(compute_dtype="float32"), 2, 512),
}


def ours(config, batch, seq):
  model = build_model(config.model)
  graphdef, params = nnx.split(model)
  params = nnx.to_pure_dict(params)
  optimizer = make_optimizer(config.optim, 1000)
  state = train_step.init_train_state(params, optimizer)
  step = jax.jit(functools.partial(train_step.train_step, graphdef=graphdef, optimizer=optimizer,
                                   schedule=lr_schedule(config.optim, 1000), grad_accum_steps=1),
                 donate_argnums=0)
  tokens = np.random.default_rng(0).integers(0, config.model.vocab_size, (batch, seq + 1))
  data = {"inputs": jnp.asarray(tokens[:, :-1], jnp.int32),
          "targets": jnp.asarray(tokens[:, 1:], jnp.int32)}
  box = [state]

  def run():
    box[0], metrics = step(box[0], data)
    jax.block_until_ready(metrics["loss"])
  return run


def reference(config, batch, seq):
  hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      **hf_config_dict(ModelArgs.from_config(config.model)),
      attn_implementation="sdpa"))
  o = config.optim
  optimizer = torch.optim.AdamW(hf.parameters(), lr=o.peak_lr, betas=(o.b1, o.b2), eps=o.eps,
                                weight_decay=o.weight_decay)
  tokens = torch.from_numpy(np.random.default_rng(0).integers(0, config.model.vocab_size,
                                                              (batch, seq + 1)))

  def run():
    out = hf(input_ids=tokens[:, :-1], labels=None)
    loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(hf.parameters(), o.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
  return run


def timed(run, steps):
  start = time.perf_counter()
  for _ in range(steps):
    run()
  return (time.perf_counter() - start) / steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="cpu,deep24,125m")
  parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
  parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (best is kept)")
  args = parser.parse_args()
  # A peak measured while the machine is busy reads low and would inflate MFU: use the best of
  # this measurement and the best ever measured here (as the trainer does, flops.py).
  fresh = flops.measure_matmul_peak(seconds=2.0)
  peak = max(fresh, flops.machine_peak_flops()[0])
  print(f"jax {jax.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}; f32 matmul peak {peak / 1e9:.0f} GFLOP/s "
        f"(best measured on this machine; {fresh / 1e9:.0f} in this run)")
  for name in args.sizes.split(","):
    preset, overrides, batch, seq = SIZES[name]
    config = get_config(preset)
    config.model.update(overrides)
    steps = max(1, args.steps // 3) if name == "125m" else args.steps
    runners = {"ours": ours(config, batch, seq), "torch": reference(config, batch, seq)}
    for run in runners.values():
      run()  # compile / warm up
    best = {k: float("inf") for k in runners}
    for _ in range(args.rounds):
      for key, run in runners.items():
        best[key] = min(best[key], timed(run, steps))
    tokens = batch * seq
    ours_tps, torch_tps = tokens / best["ours"], tokens / best["torch"]
    flops_per_token = counting.flops_per_token(config.model, seq)
    print(f"{name:>7}: {counting.param_counts(config.model)['params']:>11,} params, batch {batch} x "
          f"{seq}: ours {ours_tps:8.0f} tok/s (MFU {ours_tps * flops_per_token / peak:5.1%}), "
          f"torch {torch_tps:8.0f} tok/s (MFU {torch_tps * flops_per_token / peak:5.1%}), "
          f"ratio {ours_tps / torch_tps:.2f}", flush=True)


if __name__ == "__main__":
  main()
