"""JAX's persistent compilation cache for the command-line entry points.

A resumed run, a relaunched sweep or `experiments/evaluate.py` compiles the same programs again;
with the cache they are read back instead, which takes a small fraction of the compile time (run
a command twice with JAX_LOG_COMPILES=1 to see it; docs/performance.md). Programs that compile in
under a second are not kept (JAX's default threshold). XLA:CPU executables are machine code for
the CPU that compiled them and JAX's cache key does not name the CPU, so the default directory is
one per CPU model and feature set (a home directory shared by a cluster's nodes stays safe).

MOBILELLM_JAX_COMPILE_CACHE picks the directory; empty, "0" or "off" turns the cache off. A cache
set through JAX's own JAX_COMPILATION_CACHE_DIR is left as it is.

Programs that run the CPU kernels sharded over several devices miss the cache: their
`custom_partitioning` callbacks enter JAX's key as a per-process pointer (native/partitioning.py).
JAX writes an entry in place, once: one cut short by a crash mid-write is reported as a warning
("Error reading persistent compilation cache entry") and its program compiles as if uncached
until the directory is deleted.
"""

import hashlib
import os
import platform
import sys

import jax

ENV = "MOBILELLM_JAX_COMPILE_CACHE"
_OFF = ("", "0", "off", "none")


def host_fingerprint() -> str:
  """12 hex digits naming this machine's CPU model and instruction-set features."""
  described = [platform.machine()]
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key = line.split(":", 1)[0].strip()
        if key in ("model name", "flags", "Features", "CPU part") and line not in described:
          described.append(line)
  except OSError:
    described.append(platform.processor())
  return hashlib.sha256("".join(described).encode()).hexdigest()[:12]


def default_dir() -> str:
  return os.path.join(os.path.expanduser("~"), ".cache", "mobilellm_jax", "xla", host_fingerprint())


def resolve_dir(environ=os.environ) -> str | None:
  """The directory the cache should use, or None when it is turned off."""
  chosen = environ.get(ENV)
  if chosen is None:
    return default_dir()
  return None if chosen.strip().lower() in _OFF else os.path.expanduser(chosen)


def enable() -> str | None:
  """Turns the cache on (idempotent); returns its directory, or None when it is off. An
  unwritable directory is reported on stderr and the run goes on without the cache."""
  if jax.config.jax_compilation_cache_dir:  # set by the user, or by an earlier call
    return jax.config.jax_compilation_cache_dir
  path = resolve_dir()
  if path is None:
    return None
  try:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
      raise PermissionError(f"{path} is not writable")
  except OSError as error:
    print(f"warning: compilation cache off ({error}); set {ENV} to a writable directory",
          file=sys.stderr)
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  return path
