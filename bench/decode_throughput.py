"""Decode speed: tokens/s of the KV-cache loop beside transformers' generate on the same weights
and beside the memory-bandwidth bound, at batch 1 and 8.

    python bench/decode_throughput.py                                 # cpu, 125M, 125M-LS; batch 1, 8
    python bench/decode_throughput.py --presets cpu --batches 1 --new_tokens 16

Random weights (speed does not depend on them), float32 weights and compute (the paper presets
compute in bf16 for training; here both sides run f32). Decode tokens/s leaves out the prefill:
ours is batch x new tokens / (generate - prefill), transformers' is batch x (new - 1) /
(generate(new) - generate(1)) with --hf_new_tokens (its runs are slow); greedy, no EOS, prompt
of --prompt_len tokens.
The bound: a decode step reads every weight it uses once from memory, so at best it takes
weight bytes per token / bandwidth. Bytes per token come from footprint.py with this CPU's L3 as
the 'SRAM' and f32 weights (a block run twice in a row that fits L3 is read once; the head once);
the bandwidth is the fastest read of a 512 MiB array measured here (numpy's sum or XLA's
matrix-vector product). A step at batch
B reads the same bytes, so its bound is B times the batch-1 one. The KV cache reads are left out
(a few MB at these lengths).
"""

import argparse
import os
import time

import jax
import numpy as np
from flax import nnx

from mobilellm_jax.model import footprint, generation
from mobilellm_jax.training import runtime
from mobilellm_jax.configs import get_config
from mobilellm_jax.model import ModelArgs, build_model


def read_bandwidth(mib: int = 512, repeats: int = 5) -> float:
  """Bytes/s of the fastest pass reading a float32 array of `mib` MiB: numpy's sum (one thread)
  or XLA's matrix-vector product over it as [rows, 1024] (its threads), whichever is faster."""
  array = np.ones(mib * 2**20 // 4, np.float32)
  matrix = jax.numpy.asarray(array.reshape(-1, 1024))
  vector = jax.numpy.ones((1, 1024), np.float32)
  product = jax.jit(lambda v, m: jax.numpy.einsum("bd,vd->bv", v, m))
  passes = (lambda: array.sum(), lambda: jax.block_until_ready(product(vector, matrix)))
  return array.nbytes / min(_best(p, repeats) for p in passes)


def l3_bytes() -> int:
  """This CPU's last-level cache size (32 MiB when the OS does not say)."""
  try:
    size = os.sysconf("SC_LEVEL3_CACHE_SIZE")
    if size > 0:
      return size
    text = open("/sys/devices/system/cpu/cpu0/cache/index3/size").read().strip()
    return int(text.rstrip("K")) * 1024
  except (ValueError, OSError):
    return 32 * 2**20


def weight_bytes_per_token(model_config, cache_bytes: int) -> int:
  """footprint.py's fp16 bytes per token with cache_bytes of f32 'SRAM', scaled to f32 weights."""
  view = footprint.device_footprint(model_config, sram_bytes=cache_bytes // 2)
  return view["weight_bytes_per_token"] * 2


def _best(fn, repeats: int) -> float:
  fn()  # compiled and warm
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def ours(params, args: ModelArgs, batch: int, prompt_len: int, new_tokens: int, repeats: int):
  """(decode tokens/s, compile seconds) of generation.generate_tokens."""
  generator = generation.Generator(params, args)
  prompts = np.ones((batch, prompt_len), np.int32)
  lengths = np.full(batch, prompt_len, np.int32)
  key = jax.random.key(0)
  start = time.perf_counter()
  loop = generation.generate_tokens.lower(generator.weights, prompts, lengths, key,
                                          spec=generator.spec, max_new_tokens=new_tokens).compile()
  prefill = jax.jit(generation.prefill, static_argnums=(1, 4)).lower(
      generator.weights, generator.spec, prompts, lengths, prompt_len + new_tokens).compile()
  compile_seconds = time.perf_counter() - start
  run = lambda: jax.block_until_ready(loop(generator.weights, prompts, lengths, key))
  pre = lambda: jax.block_until_ready(prefill(generator.weights, prompts, lengths))
  seconds = _best(run, repeats) - _best(pre, repeats)
  return batch * new_tokens / seconds, compile_seconds


def transformers_tokens_per_s(params, args: ModelArgs, batch: int, prompt_len: int,
                              new_tokens: int) -> tuple[float, int]:
  """(decode tokens/s, torch threads) of transformers' generate: the faster of one thread and
  all CPUs (with other work on the cores, torch's threads spin-wait: 2 threads ran 125M at
  1.7 tok/s where one ran it at 9.9)."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.hf import hf_config_dict, state_dict_from_params  # pylint: disable=import-outside-toplevel
  model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_config_dict(args))).eval()
  state = {k: torch.from_numpy(v) for k, v in state_dict_from_params(args, params).items()}
  model.load_state_dict(state, strict=False)
  prompts = torch.ones((batch, prompt_len), dtype=torch.long)

  def generate(n):
    with torch.no_grad():
      model.generate(prompts, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                     pad_token_id=0, eos_token_id=None)
  rates = {}
  for threads in sorted({1, os.cpu_count()}):
    torch.set_num_threads(threads)
    rates[threads] = batch * (new_tokens - 1) / (_best(lambda: generate(new_tokens), 1)
                                                 - _best(lambda: generate(1), 1))
  threads = max(rates, key=rates.get)
  return rates[threads], threads


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--presets", default="cpu,mobilellm_125m,mobilellm_125m_ls")
  parser.add_argument("--batches", default="1,8")
  parser.add_argument("--prompt_len", type=int, default=16)
  parser.add_argument("--new_tokens", type=int, default=32)
  parser.add_argument("--hf_new_tokens", type=int, default=8, help="transformers' (slower) runs")
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  runtime.prepare_process()
  bandwidth, cache = read_bandwidth(), l3_bytes()
  rows, rates = [], {}
  for preset in args.presets.split(","):
    config = get_config(preset).model
    config.update(compute_dtype="float32", param_dtype="float32")
    model = build_model(config)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    del model
    model_args = ModelArgs.from_config(config)
    per_token = weight_bytes_per_token(config, cache)
    for batch in map(int, args.batches.split(",")):
      rate, compiled = ours(params, model_args, batch, args.prompt_len, args.new_tokens, args.repeats)
      theirs, threads = transformers_tokens_per_s(params, model_args, batch, args.prompt_len,
                                                  min(args.new_tokens, args.hf_new_tokens))
      rows.append((preset, batch, per_token, rate, compiled, theirs, threads))
      rates[preset, batch] = rate
      print(f"{preset} batch {batch}: ours {rate:.1f} tok/s, transformers {theirs:.1f}", flush=True)
  bandwidth = max(bandwidth, read_bandwidth())  # other work on the machine lowers either pass
  print(f"\nread bandwidth {bandwidth / 1e9:.1f} GB/s (best of before and after, 512 MiB); L3 "
        f"{cache / 2**20:.0f} MiB; {os.cpu_count()} CPUs; prompt {args.prompt_len} tokens, "
        f"{args.new_tokens} new (transformers {min(args.new_tokens, args.hf_new_tokens)}), f32")
  print("| preset | batch | weight MB/token | bound tok/s | ours tok/s | ours/bound | "
        "transformers tok/s (threads) | ours/transformers | ms/step over bound | compile s |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for preset, batch, per_token, rate, compiled, theirs, threads in rows:
    bound = batch * bandwidth / per_token
    over_ms = 1e3 * batch * (1 / rate - 1 / bound)
    print(f"| {preset} | {batch} | {per_token / 1e6:.1f} | {bound:.1f} | {rate:.1f} | "
          f"{rate / bound:.2f} | {theirs:.1f} ({threads}) | {rate / theirs:.2f} | {over_ms:.2f} | "
          f"{compiled:.0f} |")
  for batch in map(int, args.batches.split(",")):
    if ("mobilellm_125m", batch) in rates and ("mobilellm_125m_ls", batch) in rates:
      print(f"125M-LS / 125M tokens/s at batch {batch}: "
            f"{rates['mobilellm_125m_ls', batch] / rates['mobilellm_125m', batch]:.2f}")


if __name__ == "__main__":
  main()
