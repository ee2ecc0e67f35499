"""Peak FLOP/s for MFU: the datasheet of an accelerator (chips.chip_of_kind: dense bf16,
no sparsity), a measured matmul peak for CPUs."""

import json
import os
import platform
import time

import jax
import jax.numpy as jnp

from mobilellm_jax.accelerators import chips


def measure_matmul_peak(size: int = 1024, dtype=jnp.float32, seconds: float = 1.0) -> float:
  """FLOP/s of a square matmul on the default device (on CPU: all of the process's cores)."""
  a = jnp.ones((size, size), dtype)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  best, deadline = 0.0, time.perf_counter() + seconds
  while time.perf_counter() < deadline:
    start = time.perf_counter()
    f(a).block_until_ready()
    best = max(best, 2 * size**3 / (time.perf_counter() - start))
  return best


def _cpu_peak() -> float:
  """The best matmul rate ever measured on this machine: a short fresh measurement, raised to the
  cached best (a measurement taken while other work runs reads low; the peak does not)."""
  cache_dir = os.path.join(os.path.expanduser("~"), ".cache", "mobilellm_jax")
  key = f"{platform.node()}-{os.cpu_count()}-{jax.__version__}"
  path = os.path.join(cache_dir, "matmul_peak.json")
  best = measure_matmul_peak(seconds=0.5)
  try:
    with open(path) as f:
      cached = json.load(f)
    if cached.get("key") == key:
      best = max(best, cached["flops_per_s"])
  except (OSError, ValueError, KeyError):
    pass
  try:
    os.makedirs(cache_dir, exist_ok=True)
    with open(path, "w") as f:
      json.dump({"key": key, "flops_per_s": best}, f)
  except OSError:
    pass  # a read-only home still gets the fresh measurement
  return best


def machine_peak_flops() -> tuple[float, str]:
  """(peak FLOP/s of all local devices together, where the number came from)."""
  device = jax.local_devices()[0]
  if device.platform == "cpu":
    # Fake CPU devices share the same cores: the peak is the machine's, not per device.
    return _cpu_peak(), "best measured f32 matmul on this CPU"
  kind, count = device.device_kind, jax.local_device_count()
  chip = chips.chip_of_kind(kind)
  if chip is None or not chip.peak_flops:
    return float("nan"), f"unknown device kind {kind!r}: no datasheet in accelerators/chips.py"
  return chip.peak_flops * count, f"{kind} bf16 datasheet peak x {count}"
