"""Process set-up for the command-line entry points: `prepare_process()` is the first thing each
CLI that runs JAX programs does (experiments/*.py, `python -m mobilellm_jax.hf`, SLURM tasks).

Importing the library changes nothing in the importing process; what a training or evaluation
process wants is done here instead: JAX's platform list (a host without TPU chips skips libtpu's
start-up probe, ~4 s and a page of warnings), glibc malloc tuning (host_memory.py), the persistent
compilation cache (compile_cache.py) and, when the process computes on the CPU, the C++ kernels'
build (native/), started in the background so it overlaps with data preparation.
"""

import glob
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys

import jax
from absl import flags

from mobilellm_jax.ops import native
from mobilellm_jax.training import compile_cache, host_memory

_GOOGLE_PCI_VENDOR = "0x1ae0"  # what jax's hardware_utils looks for on the PCI bus
_NVIDIA_DEVICES = ("dev/nvidia0", "dev/nvidiactl", "dev/dxg")  # jax's own check for a visible GPU


def has_tpu(root: str = "/", environ=os.environ) -> bool:
  """Whether this host has TPU chips, read from device files (no JAX backend is started): TPU
  device nodes (/dev/accel*), a Google TPU on the PCI bus (how jax and libtpu detect one, v5e on
  included), or JAX_FORCE_TPU_INIT / TPU_ACCELERATOR_TYPE set as on a TPU VM."""
  if environ.get("JAX_FORCE_TPU_INIT") or environ.get("TPU_ACCELERATOR_TYPE"):
    return True
  if glob.glob(os.path.join(root, "dev", "accel[0-9]*")):
    return True
  for vendor in glob.glob(os.path.join(root, "sys", "bus", "pci", "devices", "*", "vendor")):
    try:
      with open(vendor) as f:
        if f.read().strip() == _GOOGLE_PCI_VENDOR:
          return True
    except OSError:
      continue
  return False


def _installed_plugins() -> set[str]:
  """Names of the installed JAX PJRT plugins (e.g. xla_cuda12), found as jax finds them."""
  names = {entry.name for entry in importlib.metadata.entry_points(group="jax_plugins")}
  spec = importlib.util.find_spec("jax_plugins")
  if spec is not None and spec.submodule_search_locations:
    names |= {module.name for module in pkgutil.iter_modules(spec.submodule_search_locations)}
  return names


def default_platforms(root: str = "/", environ=os.environ, plugins=None) -> str | None:
  """The JAX_PLATFORMS value for this host, or None to leave JAX's own choice (a TPU host): the
  GPUs whose plugin is installed and whose devices are visible, then the CPU."""
  if has_tpu(root, environ):
    return None
  plugins = _installed_plugins() if plugins is None else plugins
  platforms = []
  if (any("cuda" in name for name in plugins)
      and any(os.path.exists(os.path.join(root, d)) for d in _NVIDIA_DEVICES)):
    platforms.append("cuda")
  if any("rocm" in name for name in plugins) and os.path.exists(os.path.join(root, "dev", "kfd")):
    platforms.append("rocm")
  return ",".join(platforms + ["cpu"])


def choose_platforms() -> str:
  """Sets JAX_PLATFORMS (for this process and its children) unless the user set it, even to ''.
  Must run before a JAX backend starts; returns the value in force."""
  if "JAX_PLATFORMS" not in os.environ:
    chosen = default_platforms()
    if chosen is not None:
      os.environ["JAX_PLATFORMS"] = chosen
      jax.config.update("jax_platforms", chosen)  # jax read the variable when it was imported
  return os.environ.get("JAX_PLATFORMS", "")


def prepare_process(*, kernels: bool = True) -> None:
  """Platform list, malloc tuning and compilation cache for this process; with `kernels`, starts
  building the C++ kernels when the process computes on the CPU. Idempotent."""
  platforms = choose_platforms()
  host_memory.keep_freed_memory()  # before XLA starts its threads: see host_memory.py
  compile_cache.enable()
  if kernels and platforms.split(",")[0] == "cpu":
    native.build_in_background()


def parse_config_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing for the CLIs with a `--config` file (experiments/train.py, compile.py),
  given to `app.run(main, flags_parser=...)`: a bad preset, config field or config file ends the process
  with one `error: ...` line and status 2, as the CLIs' other input errors do, not a traceback."""
  try:
    remaining = flags.FLAGS(argv)
    if "config" in flags.FLAGS:
      flags.FLAGS.config.keys()  # ml_collections defers an unloadable file's error to first use
    return remaining
  except (flags.Error, AttributeError, KeyError, OSError, ValueError, TypeError) as error:
    print(f"error: {_config_flag_message(error, argv)}", file=sys.stderr)
    sys.exit(2)


def _config_flag_message(error: BaseException, argv: list[str]) -> str:
  """The root cause of a flag-parsing failure, on one line."""
  if isinstance(error, flags.Error) and "Traceback" not in str(error):
    return " ".join(str(error).split())  # absl's own message names the flag
  while (error.__cause__ or error.__context__) is not None:
    error = error.__cause__ or error.__context__
  if isinstance(error, (AttributeError, KeyError)):  # ml_collections: no such field
    field = str(error).strip("\"'")
    given = [a for a in argv[1:] if a.startswith("--config.") and f".{field}" in a.split("=")[0]]
    return f"no config field {field!r} ({', '.join(given) or 'a --config.* flag'}); " \
           "the fields are in mobilellm_jax/configs/base.py"
  if isinstance(error, OSError):  # the config file itself
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"cannot load the --config file: {lines[-1] if lines else error}"
  return " ".join(str(error).split())
