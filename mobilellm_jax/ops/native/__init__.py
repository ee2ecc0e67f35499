"""C++ kernels for XLA:CPU, built on first use with the system C++ compiler and called via the
XLA FFI: fused causal attention (cpu_attention.cc), SwiGLU's element-wise backward pass
(cpu_swiglu.cc), a chunk's softmax cross-entropy with its gradient (cpu_cross_entropy.cc) and an
unwritten buffer for layer_scan.py's stacks (cpu_uninitialised.cc); cpu_common.h holds what the
kernels share.

The shared library is compiled once per (source, jaxlib, CPU) into ~/.cache/mobilellm_jax/native
(MOBILELLM_NATIVE_CACHE overrides) and reused. The CLIs start the build when their process starts
(`build_in_background`, from training/runtime.py); a trace that needs the kernels builds them on
demand, or waits for the build under way. Without a compiler, `load()` raises NativeBuildError, which says
what failed; `build_error()` is the non-raising check.
"""

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading

import jax
import jaxlib

from mobilellm_jax.training import target

from mobilellm_jax.ops.native.partitioning import batch_split  # noqa: F401 (re-exported)

_HERE = os.path.dirname(__file__)
SOURCES = [os.path.join(_HERE, name) for name in ("cpu_attention.cc", "cpu_swiglu.cc",
                                                    "cpu_cross_entropy.cc",
                                                    "cpu_uninitialised.cc")]
HEADERS = [os.path.join(_HERE, "cpu_common.h")]
TARGETS = {"mobilellm_attention_fwd": "MobilellmAttentionForward",
           "mobilellm_attention_bwd": "MobilellmAttentionBackward",
           "mobilellm_fused_attention_fwd": "MobilellmFusedAttentionForward",
           "mobilellm_fused_attention_bwd": "MobilellmFusedAttentionBackward",
           "mobilellm_swiglu_bwd": "MobilellmSwigluBackward",
           "mobilellm_softmax_cross_entropy": "MobilellmSoftmaxCrossEntropy",
           "mobilellm_uninitialised": "MobilellmUninitialised"}


class NativeBuildError(RuntimeError):
  pass


# One build at a time in a process: a trace that needs the library waits for a background build.
_BUILD_LOCK = threading.Lock()


def _cpu_signature() -> str:
  """The CPU model and flags: -march=native code is only valid on the CPU it was built for."""
  try:
    with open("/proc/cpuinfo") as f:
      lines = [l for l in f if l.startswith(("model name", "flags"))][:2]
  except OSError:
    lines = [platform.processor()]
  return "".join(lines)


def _library_path() -> str:
  key = hashlib.sha256(jaxlib.__version__.encode() + _cpu_signature().encode())
  for path in SOURCES + HEADERS:
    with open(path, "rb") as f:
      key.update(f.read())
  cache = os.environ.get("MOBILELLM_NATIVE_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "mobilellm_jax", "native")
  return os.path.join(cache, f"kernels-{key.hexdigest()[:16]}.so")


def _build(path: str, sources=None) -> None:
  """Compiles `sources` (default: this package's kernels) into the shared library `path`."""
  sources = sources or SOURCES
  compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
  if not compiler:
    raise NativeBuildError("no C++ compiler found (set CXX or install g++) to build "
                           f"{', '.join(sources)}")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # Build to a temporary name and rename: concurrent processes never load a half-written file.
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(path))
  os.close(fd)
  cmd = [compiler, "-O3", "-march=native", "-std=c++17", "-shared", "-fPIC",
         "-fno-math-errno", "-I", jax.ffi.include_dir(), *sources, "-o", tmp]
  result = subprocess.run(cmd, capture_output=True, text=True)
  if result.returncode != 0:
    os.unlink(tmp)
    raise NativeBuildError(f"building {', '.join(sources)} failed ({' '.join(cmd)}):\n"
                           f"{result.stderr[-2000:]}")
  os.replace(tmp, path)


def build() -> str:
  """Compiles the library unless it is there already; returns its path."""
  path = _library_path()
  with _BUILD_LOCK:
    if not os.path.exists(path):
      _build(path)
  return path


def build_in_background() -> threading.Thread:
  """Starts `build()` in a thread (the process waits for it at exit, so no half-built temporary
  is left behind). A failure is not raised here: the first trace that needs the kernels reports
  it, or falls back to the plain formulas (`build_error`)."""
  def quietly():
    try:
      build()
    except (NativeBuildError, OSError):
      pass
  thread = threading.Thread(target=quietly, name="mobilellm-native-build")
  thread.start()
  return thread


@functools.cache
def load() -> str:
  """Builds (if needed) and registers the kernels with XLA:CPU; returns the library path."""
  path = build()
  try:
    library = ctypes.cdll.LoadLibrary(path)
  except OSError as e:
    raise NativeBuildError(f"loading {path} failed: {e}; delete it to rebuild") from e
  for name, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, symbol)),
                                platform="cpu")
  return path


@functools.cache
def build_error() -> str | None:
  """Why the kernels cannot be loaded, or None. Cached, so a failed build is tried once per
  process, not on every trace."""
  try:
    load()
    return None
  except NativeBuildError as e:
    return str(e)


def runs_here(*float_arrays) -> bool:
  """Whether the float32 kernels can take these arrays in the program being traced: compiled for
  CPU (training/target.py), all of them float32, and a library that builds and loads."""
  return (target.platform() == "cpu"
          and all(a.dtype == jax.numpy.float32 for a in float_arrays)
          and build_error() is None)
