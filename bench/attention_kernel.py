"""The fused C++ attention kernel alone (the model's path: q/k/v from one projection, RoPE inside):
forward and backward ms and GFLOP/s per shape, optionally against the kernel of another git
revision built beside it, alternating in one process.

    python bench/attention_kernel.py [--shapes 16,256,4,2,32;16,256,3,3,32;2,512,9,3,64] \
        [--calls 20] [--rounds 8] [--baseline HEAD~1]

A shape is batch,length,heads,kv_heads,head_dim: the defaults are the cpu preset, deep24 and
MobileLLM-125M as bench/train_throughput.py runs them. Each round times `--calls` kernel calls
inside one jitted loop (as in a training step: no Python dispatch between calls, which would
dominate a call this small); the best round is kept. GFLOP/s counts
the causal half of the score and value matmuls (forward 2 of them, backward 5). With
--baseline, that revision's mobilellm_jax/ops/native (earlier mobilellm_jax/native) sources are
compiled into a temporary library and registered under other FFI names; both kernels then run the
same inputs in alternating rounds, and the largest difference between their outputs is printed.
"""

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from mobilellm_jax.ops import native
from mobilellm_jax.training import host_memory

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where the kernel sources are: today, and in revisions before the package was split up.
_NATIVE_FOLDERS = ("mobilellm_jax/ops/native", "mobilellm_jax/native")


def build_baseline(revision: str) -> str:
  """Compiles `revision`'s kernels and registers them as baseline_<target>; returns the prefix."""
  tmp = tempfile.mkdtemp(prefix="attention_kernel_")
  sources = []
  for path in native.SOURCES + native.HEADERS:
    name = os.path.basename(path)
    for folder in _NATIVE_FOLDERS:  # the first that the revision has
      text = subprocess.run(["git", "-C", _REPO, "show", f"{revision}:{folder}/{name}"],
                            capture_output=True, text=True)
      if text.returncode == 0:
        break
    if text.returncode != 0:
      sys.exit(f"--baseline {revision}: cannot read {name}: {text.stderr.strip()}")
    with open(os.path.join(tmp, name), "w") as f:
      f.write(text.stdout)
    if name.endswith(".cc"):
      sources.append(os.path.join(tmp, name))
  library = os.path.join(tmp, "baseline.so")
  try:
    native._build(library, sources)  # the package's own compiler and flags
  except native.NativeBuildError as e:
    sys.exit(f"--baseline {revision}: {e}")
  loaded = ctypes.cdll.LoadLibrary(library)
  for target, symbol in native.TARGETS.items():
    jax.ffi.register_ffi_target("baseline_" + target, jax.ffi.pycapsule(getattr(loaded, symbol)),
                                platform="cpu")
  return "baseline_"


def kernels(prefix: str, B, L, H, E):
  """Jitted (forward, backward) calls of the fused kernels registered under prefix + name."""
  def forward(qkv, sin, cos):
    return jax.ffi.ffi_call(prefix + "mobilellm_fused_attention_fwd",
                            (jax.ShapeDtypeStruct((B, L, H, E), jnp.float32),
                             jax.ShapeDtypeStruct((B, H, L), jnp.float32)))(qkv, sin, cos)

  def backward(qkv, sin, cos, out, lse, dout):
    return jax.ffi.ffi_call(prefix + "mobilellm_fused_attention_bwd",
                            jax.ShapeDtypeStruct(qkv.shape, jnp.float32))(
                                qkv, sin, cos, out, lse, dout)
  return jax.jit(forward), jax.jit(backward)


def timed_loops(forward, backward, calls: int):
  """Jitted functions that run the forward (or the backward) `calls` times in a loop. Each call
  writes one element of its output back into the next call's input, so none is skipped or
  merged, at the cost of one in-place element update per call."""
  def feed(qkv, x):
    return jax.lax.dynamic_update_slice(qkv, qkv[:1, :1, :1] + 0.0 * x[:1, :1, :1], (0, 0, 0))

  @jax.jit
  def forwards(qkv, sin, cos):
    return jax.lax.fori_loop(
        0, calls, lambda i, c: feed(c, forward(c, sin, cos)[0][..., 0]), qkv)

  @jax.jit
  def backwards(qkv, sin, cos, out, lse, dout):
    return jax.lax.fori_loop(
        0, calls, lambda i, c: feed(c, backward(c, sin, cos, out, lse, dout)), qkv)
  return forwards, backwards


def measure(shape, calls: int, rounds: int, prefixes: dict) -> None:
  B, L, H, K, E = shape
  rng = np.random.default_rng(0)
  qkv = jnp.asarray(rng.standard_normal((B, L, (H + 2 * K) * E), np.float32))
  angles = jnp.asarray(rng.uniform(0, 6, (B, L, E // 2)).astype(np.float32))
  sin, cos = jnp.sin(angles), jnp.cos(angles)
  dout = jnp.asarray(rng.standard_normal((B, L, H, E), np.float32))
  runs, outputs = {}, {}
  for name, prefix in prefixes.items():
    forward, backward = kernels(prefix, B, L, H, E)
    out, lse = forward(qkv, sin, cos)
    outputs[name] = (out, backward(qkv, sin, cos, out, lse, dout))
    runs[name] = (timed_loops(forward, backward, calls), out, lse)
  seconds = {name: ([], []) for name in runs}
  for i in range(rounds + 1):  # round 0 compiles
    order = list(runs.items()) if i % 2 == 0 else list(runs.items())[::-1]
    for name, ((forwards, backwards), out, lse) in order:
      start = time.perf_counter()
      jax.block_until_ready(forwards(qkv, sin, cos))
      forward_s = (time.perf_counter() - start) / calls
      start = time.perf_counter()
      jax.block_until_ready(backwards(qkv, sin, cos, out, lse, dout))
      if i:
        seconds[name][0].append(forward_s)
        seconds[name][1].append((time.perf_counter() - start) / calls)
  causal_matmul = 2 * B * H * L * L * E / 2  # one [L, L] x E product, causal half
  label = f"B{B} L{L} H{H} K{K} E{E}"
  for name, (fwd_s, bwd_s) in seconds.items():
    f, b = min(fwd_s), min(bwd_s)
    print(f"{label} {name:8s}: forward {1e3 * f:6.2f} ms ({2 * causal_matmul / f / 1e9:3.0f} "
          f"GFLOP/s), backward {1e3 * b:6.2f} ms ({5 * causal_matmul / b / 1e9:3.0f} GFLOP/s); "
          f"best of {rounds} rounds of {calls} calls")
  if len(outputs) == 2:
    (o1, g1), (o2, g2) = outputs.values()
    print(f"{label} largest difference: forward {float(jnp.max(jnp.abs(o1 - o2))):.2e}, "
          f"backward {float(jnp.max(jnp.abs(g1 - g2))):.2e}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shapes", default="16,256,4,2,32;16,256,3,3,32;2,512,9,3,64")
  parser.add_argument("--calls", type=int, default=20, help="kernel calls per timed loop")
  parser.add_argument("--rounds", type=int, default=8, help="timed loops per kernel (best kept)")
  parser.add_argument("--baseline", default="", help="a git revision whose kernel to compare with")
  args = parser.parse_args()
  if jax.default_backend() != "cpu":
    sys.exit("the C++ kernels run on the CPU backend only")
  native.load()
  prefixes = {"current": ""}
  if args.baseline:
    prefixes["baseline"] = build_baseline(args.baseline)
  for text in args.shapes.split(";"):
    shape = tuple(int(x) for x in text.split(","))
    if len(shape) != 5 or shape[2] % shape[3] or shape[4] % 8:
      parser.error(f"--shapes: {text!r} is not batch,length,heads,kv_heads,head_dim with heads "
                   "a multiple of kv_heads and head_dim a multiple of 8")
    measure(shape, args.calls, args.rounds, prefixes)


if __name__ == "__main__":
  host_memory.keep_freed_memory()  # as the CLIs do (runtime.py): XLA:CPU reuses freed buffers
  main()
