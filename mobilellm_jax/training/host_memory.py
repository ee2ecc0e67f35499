"""Keep freed host memory in the process (glibc malloc), so XLA:CPU buffers are reused, not refaulted.

XLA:CPU allocates each step's activations and temporaries with malloc. By default glibc serves
large blocks with fresh mmap()s and per-thread arenas that hand memory back when freed, so every
training step page-faults its buffers in again and spends system time on it. With one arena, no
mmap() blocks and no trimming, freed blocks are reused (tests/test_host_memory.py counts the
faults with and without). The cost is that the process keeps
its peak heap until it exits, which is what a training process does anyway.

No trimming means M_TRIM_THRESHOLD = -1 (never). The largest positive value, 2**31 - 1, still
hands a free heap top above 2 GB back to the OS, so at MobileLLM-125M sizes the heap would grow,
be trimmed and be faulted in again every few steps.

This must run before XLA starts its threads, so the command-line entry points call it first
(runtime.prepare_process); importing the package leaves malloc alone. Set
MOBILELLM_MALLOC_TUNING=0 to leave it alone in the CLIs too. A no-op where libc is not glibc.
"""

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
  """Tunes glibc malloc as above; True when it was applied."""
  if os.environ.get("MOBILELLM_MALLOC_TUNING", "1") == "0":
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False  # not glibc (macOS, musl): nothing to tune
  return all(mallopt(param, value) == 1 for param, value in (
      (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
