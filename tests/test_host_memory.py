"""The malloc tuning applies on this (glibc) machine, can be switched off, and cuts page faults."""

import os
import subprocess
import sys

import pytest

from mobilellm_jax.training import host_memory

_FAULTS = """
import resource, sys
import jax.numpy as jnp
if sys.argv[1] == "1":
  from mobilellm_jax.training import runtime
  runtime.prepare_process(kernels=False)
f = lambda x: (x * 2.0).sum()
x = jnp.ones((4096, 4096))
f(x).block_until_ready()
(x + 1.0).block_until_ready()  # the first result grows the heap once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
  y = x + 1.0
  y.block_until_ready()
  y.delete()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_applies_on_glibc_and_env_switches_it_off(monkeypatch):
  assert host_memory.keep_freed_memory() is True
  monkeypatch.setenv("MOBILELLM_MALLOC_TUNING", "0")
  assert host_memory.keep_freed_memory() is False


def _run(script: str, tuned: bool) -> int:
  """The number `script` prints last, run in a fresh process with or without the tuning."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  out = subprocess.run([sys.executable, "-c", script, "1" if tuned else "0"], env=env,
                       capture_output=True, text=True, check=True)
  return int(out.stdout.split()[-1])


@pytest.mark.slow
def test_reused_buffers_do_not_fault_again():
  # Twenty more 64 MB results after the first: untuned, each faults its 16k pages in anew (328k);
  # tuned, they reuse freed memory (measured 0 to 98k: a small block sometimes splits a freed one
  # and the heap grows again).
  untuned, tuned = _run(_FAULTS, False), _run(_FAULTS, True)
  assert untuned > 20 * 10_000
  assert tuned < untuned / 2


_KEPT = """
import ctypes, sys
if sys.argv[1] == "1":
  from mobilellm_jax.training import runtime
  runtime.prepare_process(kernels=False)
def rss():
  return int(open("/proc/self/statm").read().split()[1]) * 4096
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size, touched = 2**31 + 2**26, 2**26  # a block above 2 GB; only its last 64 MB paged in
before = rss()
block = libc.malloc(size)  # nothing else is allocated until it is freed, so it can be the top
ctypes.memset(block + size - touched, 1, touched)
libc.free(block)
print(rss() - before)
"""


def test_freed_memory_above_2gb_stays_in_the_process():
  # A trim threshold of 2**31 - 1 still handed a free heap top above 2 GB back to the OS: at
  # MobileLLM-125M sizes that refaults the heap every few steps. Untuned,
  # a block this size is an mmap() that free() unmaps.
  assert _run(_KEPT, False) < 16 << 20
  assert _run(_KEPT, True) >= 48 << 20
