"""Training throughput: our train step (the trainer's own step function, AdamW included) against
`transformers.LlamaForCausalLM` + `torch.optim.AdamW` on the same architecture, batch and sequence,
in one process, alternating; plus MFU.

    python bench/train_throughput.py                       # cpu default, 24-layer thin, 125M (few steps)
    python bench/train_throughput.py --sizes cpu --steps 10
    python bench/train_throughput.py --sizes 125m-2k,350m-2k --attention auto,xla   # on a GPU

Prints one line per size (and attention kernel): tokens/s for both (best round), the ratio of
those, the median and range of the ratio within each round, and MFU. Timing starts after each
has compiled and two untimed alternating rounds (WARMUP_ROUNDS). Single device (no mesh). On
CPU, MFU is against the best f32 matmul measured on this machine; on a GPU against the bf16
datasheet peak (accelerators/peaks.py) and against a bf16 matmul measured in the run. On a GPU
PyTorch runs with fp32 weights under bf16 autocast (our compute_dtype) and fused AdamW.
"""

import argparse
import functools
import gc
import json
import os
import time

# PyTorch shares the GPU with JAX in this process: JAX must not take 75% of it up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from flax import nnx  # noqa: E402

from mobilellm_jax.accelerators import peaks  # noqa: E402
from mobilellm_jax.model import counting  # noqa: E402
from mobilellm_jax.training import host_memory, step as train_step  # noqa: E402
from mobilellm_jax.configs import ConfigError, get_config, validate_model  # noqa: E402
from mobilellm_jax.hf import hf_config_dict  # noqa: E402
from mobilellm_jax.model import ModelArgs, build_model  # noqa: E402
from mobilellm_jax.training.optim import lr_schedule, make_optimizer  # noqa: E402

SIZES = {  # name -> (preset, model overrides, batch, seq)
    "cpu": ("cpu", {}, 16, 256),
    "deep24": ("cpu", dict(num_layers=24, dim=96, num_heads=3, num_kv_heads=3, ffn_dim=256), 16, 256),
    "125m": ("mobilellm_125m", dict(compute_dtype="float32"), 2, 512),
    # GPU sizes: the paper's shapes, sequence and bf16 compute (fp32 weights).
    "125m-2k": ("mobilellm_125m", {}, 16, 2048),
    "350m-2k": ("mobilellm_350m", {}, 8, 2048),
}


# Untimed alternating rounds after the first (compiling) step of each. The first steps grow the
# heap to the size where it stays (host_memory.py): at 125M a step or two more page-fault their
# temporaries in once each, and once more when the other framework's steps first run between
# ours in the same heap. A start-up cost like the compile, not the steady state of a training
# run.
WARMUP_ROUNDS = 2


def ours(config, batch, seq):
  model = build_model(config.model)
  graphdef, params = nnx.split(model)
  params = nnx.to_pure_dict(params)
  optimizer = make_optimizer(config.optim, 1000)
  state = train_step.init_train_state(params, optimizer)
  step = jax.jit(functools.partial(train_step.train_step, graphdef=graphdef, optimizer=optimizer,
                                   schedule=lr_schedule(config.optim, 1000), grad_accum_steps=1),
                 donate_argnums=0, compiler_options=train_step.compiler_options())
  tokens = np.random.default_rng(0).integers(0, config.model.vocab_size, (batch, seq + 1))
  data = {"inputs": jnp.asarray(tokens[:, :-1], jnp.int32),
          "targets": jnp.asarray(tokens[:, 1:], jnp.int32)}
  box = [state]

  losses = []

  def run():
    box[0], metrics = step(box[0], data)
    losses.append(float(metrics["loss"]))  # waits for the step
  run.losses = losses
  run.hlo = lambda: step.lower(box[0], data).compile().as_text()
  return run


def reference(config, batch, seq):
  device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)  # the same initial weights, so the same first loss, in every run
  hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      **hf_config_dict(ModelArgs.from_config(config.model)),
      attn_implementation="sdpa")).to(device)
  o = config.optim
  optimizer = torch.optim.AdamW(hf.parameters(), lr=o.peak_lr, betas=(o.b1, o.b2), eps=o.eps,
                                weight_decay=o.weight_decay, fused=device == "cuda")
  tokens = torch.from_numpy(np.random.default_rng(0).integers(0, config.model.vocab_size,
                                                              (batch, seq + 1))).to(device)
  autocast = torch.autocast(device, dtype=torch.bfloat16,
                            enabled=config.model.compute_dtype == "bfloat16")
  losses = []

  def run():
    with autocast:
      out = hf(input_ids=tokens[:, :-1], labels=None)
    loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1),
                                             tokens[:, 1:].flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(hf.parameters(), o.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    losses.append(loss.item())  # waits for the step (also on a GPU)
  run.losses = losses
  return run


def timed(run, steps):
  start = time.perf_counter()
  for _ in range(steps):
    run()
  return (time.perf_counter() - start) / steps


def paired_ratios(round_seconds, key):
  """torch seconds / `key` seconds within each round (the two ran minutes apart at most): on a
  machine whose speed drifts, their spread says how far to trust the ratio of the best rounds."""
  if key == "torch" or "torch" not in round_seconds:
    return []
  return [t / s for t, s in zip(round_seconds["torch"], round_seconds[key])]


def mfu_peaks():
  """[(label, FLOP/s)] to take MFU against; the first is the headline."""
  if jax.default_backend() == "cpu":
    # A peak measured while the machine is busy reads low and would inflate MFU: use the best of
    # this measurement and the best ever measured here (as the trainer does, accelerators/peaks.py).
    fresh = peaks.measure_matmul_peak(seconds=2.0)
    best = max(fresh, peaks.machine_peak_flops()[0])
    print(f"f32 matmul peak {best / 1e9:.0f} GFLOP/s (best measured on this machine; "
          f"{fresh / 1e9:.0f} in this run)")
    return [("", best)]
  datasheet, source = peaks.machine_peak_flops()
  measured = peaks.measure_matmul_peak(8192, jnp.bfloat16, seconds=3.0)
  print(f"{jax.devices()[0].device_kind}: peak {datasheet / 1e12:.0f} TFLOP/s ({source}); "
        f"bf16 8192^3 matmul measured here {measured / 1e12:.0f} TFLOP/s")
  return [("", datasheet), ("measured-peak ", measured)]


def profile(run, directory, steps):
  """A jax.profiler trace of `steps` steps, with the step's optimized HLO beside it, for
  bench/profile_summary.py."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "hlo.txt"), "w") as f:
    f.write(run.hlo())
  with open(os.path.join(directory, "steps.txt"), "w") as f:
    f.write(str(steps))
  with jax.profiler.trace(directory):
    for _ in range(steps):
      run()
  print(f"trace of {steps} steps: {directory} (python bench/profile_summary.py {directory})")


def _free_accelerator_memory():
  gc.collect()
  if torch.cuda.is_available():
    torch.cuda.empty_cache()


def bench_size(name, args, peak_list):
  preset, overrides, batch, seq = SIZES[name]
  batch = args.batch or batch
  config = get_config(preset)
  config.model.update(overrides)
  for assignment in args.set:
    field, _, value = assignment.partition("=")
    section, _, key = field.partition(".")
    if section not in config or key not in config[section]:
      raise SystemExit(f"--set {assignment}: unknown config field {field!r}")
    current = config[section][key]
    try:
      config[section][key] = (value.lower() in ("1", "true") if isinstance(current, bool)
                              else type(current)(value))
    except ValueError:
      raise SystemExit(f"--set {assignment}: {field} expects type {type(current).__name__}, "
                       f"got {value!r}") from None
  steps = max(1, args.steps // 3) if name == "125m" else args.steps
  runners = {}
  for attention in args.attention.split(","):
    config.model.attention = attention
    try:
      validate_model(config.model)
    except ConfigError as e:
      raise SystemExit(f"{name}: {e}") from None
    key = "ours" if attention == "auto" else f"ours[{attention}]"
    runners[key] = functools.partial(ours, config.copy_and_resolve_references(), batch, seq)
  if not args.no_reference:
    runners["torch"] = functools.partial(reference, config, batch, seq)
  for key in list(runners):
    try:  # build and compile; one that fails (out of memory, say) is reported
      runners[key] = runners[key]()
      runners[key]()
    except Exception as e:  # noqa: BLE001 - reported, the other runners still run
      print(f"{name:>7}: {key} failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}",
            flush=True)
      runners.pop(key)
      _free_accelerator_memory()
  for _ in range(WARMUP_ROUNDS):
    for run in runners.values():
      run()
  round_seconds = {key: [] for key in runners}
  for r in range(args.rounds):
    # Who goes first alternates, so a slow spell of this shared machine lands on both sides.
    order = list(runners.items())
    for key, run in (order if r % 2 == 0 else order[::-1]):
      round_seconds[key].append(timed(run, steps))
  best = {key: min(seconds) for key, seconds in round_seconds.items()}
  if args.profile:
    for key, run in runners.items():
      if key != "torch":
        profile(run, os.path.join(args.profile, key.replace("[", "_").replace("]", "")), steps)
  tokens = batch * seq
  flops_per_token = counting.flops_per_token(config.model, seq)
  tps = {key: tokens / seconds for key, seconds in best.items()}
  results = []
  for key, value in tps.items():
    mfu = ", ".join(f"{label}MFU {value * flops_per_token / p:5.1%}" for label, p in peak_list)
    paired = paired_ratios(round_seconds, key)
    ratio = (f", {value / tps['torch']:.2f}x torch (per round: median {np.median(paired):.2f}, "
             f"{min(paired):.2f}-{max(paired):.2f})" if paired else "")
    print(f"{name:>7}: {counting.param_counts(config.model)['params']:>11,} params, batch {batch} x "
          f"{seq}: {key:>12} {value:9.0f} tok/s ({mfu}){ratio}; first loss "
          f"{runners[key].losses[0]:.4f}", flush=True)
    results.append(dict(size=name, runner=key, batch=batch, seq=seq, tokens_per_s=value,
                        step_s=best[key], mfu=value * flops_per_token / peak_list[0][1],
                        first_loss=runners[key].losses[0], overrides=args.set,
                        round_step_s=round_seconds[key],
                        ratio_per_round=paired))
  runners.clear()
  _free_accelerator_memory()
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="cpu,deep24,125m", help=f"comma list of {list(SIZES)}")
  parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
  parser.add_argument("--rounds", type=int, default=3,
                      help="alternating rounds (best is kept; the ratio is also given per round)")
  parser.add_argument("--attention", default="auto",
                      help="comma list of model.attention kernels to time ours with")
  parser.add_argument("--batch", type=int, default=0, help="override every size's batch")
  parser.add_argument("--json", default="", help="also append one JSON line per result here")
  parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                      help="config override for every size, e.g. model.scan_layers=false")
  parser.add_argument("--no-reference", action="store_true", help="time ours only (no PyTorch)")
  parser.add_argument("--profile", default="",
                      help="after timing, write a jax.profiler trace of ours per kernel here")
  args = parser.parse_args()
  for name in args.sizes.split(","):
    if name not in SIZES:
      parser.error(f"unknown size {name!r}; known: {', '.join(SIZES)}")
  print(f"jax {jax.__version__} on {jax.default_backend()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}")
  peak_list = mfu_peaks()
  for name in args.sizes.split(","):
    results = bench_size(name, args, peak_list)
    if args.json:
      with open(args.json, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in results)


if __name__ == "__main__":
  host_memory.keep_freed_memory()  # as the CLIs do (runtime.py): XLA:CPU reuses freed buffers
  main()
