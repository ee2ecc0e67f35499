"""Compile targets named on the command line (`--target tpu:v5e:4x4`, `cpu:8`, `local`) and the
datasheet figures of their chips.

A TPU target needs no TPU: the TPU compiler from PyPI (libtpu, in requirements.txt) describes a
slice's devices from its topology name (`jax.experimental.topologies`), and jit compiles for
them. A GPU target (`gpu:h100x8`) needs no GPU either, only the CUDA compiler (the optional
`jax[cuda12]`, ~5.5 GB), given the GPU's description below; unlike the TPU compiler it compiles a
program that does not fit, so the fit verdict is memory_analysis() against the GPU's memory. The
figures below are the vendors' datasheet numbers; the roofline estimates built on them (aot.py)
say so.
"""

import dataclasses
import importlib.util
import os
import re

import jax

from mobilellm_jax.training import target

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator's datasheet: memory per chip, dense bf16 peak, memory bandwidth."""
  name: str
  hbm_bytes: float
  peak_flops: float | None  # None: no datasheet peak (CPUs)
  hbm_bytes_per_s: float | None


# TPU generations by the names topologies use (per chip; v4 and v5p count both TensorCores).
TPU_CHIPS = {
    "v4": Chip("TPU v4", 32 * GIB, 275e12, 1.2e12),
    "v5e": Chip("TPU v5e", 16 * GIB, 197e12, 0.819e12),
    "v5p": Chip("TPU v5p", 95 * GIB, 459e12, 2.765e12),
    "v6e": Chip("TPU v6e", 32 * GIB, 918e12, 1.64e12),
}
# GPUs by a word of their device kind ('NVIDIA H100 80GB HBM3', 'NVIDIA A100-SXM4-80GB').
GPU_CHIPS = {
    "H200": Chip("H200", 141e9, 989e12, 4.8e12),
    "H100": Chip("H100", 80e9, 989e12, 3.35e12),
    "A100": Chip("A100 80GB", 80e9, 312e12, 2.04e12),
    "L4": Chip("L4", 24e9, 121e12, 0.3e12),
    "A10": Chip("A10", 24e9, 125e12, 0.6e12),
}
# Device kinds as JAX reports them, on a TPU VM and for libtpu's compile-only devices alike; the
# generation names too, which some releases report.
TPU_DEVICE_KINDS = {"TPU v4": "v4", "TPU v5 lite": "v5e", "TPU v5e": "v5e", "TPU v5": "v5p",
                    "TPU v5p": "v5p", "TPU v6 lite": "v6e", "TPU v6e": "v6e"}
MEGACORE = ("v4", "v5p")  # two TensorCores per chip, one JAX device each chip when fused

# What the CUDA compiler needs to know of a GPU it does not have (XLA's GpuTargetConfig, as
# xla/tools/hlo_opt/gpu_specs/ writes them): --target gpu:<name>x<count>.
_DESCRIPTION = """gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: %(shared_per_core)d threads_per_core_limit: 2048 core_count: %(cores)d fpus_per_core: %(fpus)d
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: %%(bandwidth)d l2_cache_size: %(l2)d clock_rate_ghz: %(clock)s
  device_memory_size: %%(memory)d shared_memory_per_block_optin: %(optin)d
  cuda_compute_capability { major: %(major)d } registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 }
device_description_str: "%%(kind)s"
"""
_HOPPER = _DESCRIPTION % dict(shared_per_core=233472, cores=132, fpus=128, l2=52428800,
                              clock="1.98", optin=232448, major=9)
_AMPERE = _DESCRIPTION % dict(shared_per_core=167936, cores=108, fpus=64, l2=41943040,
                              clock="1.41", optin=166912, major=8)
GPU_TARGETS = {  # name in --target: (GPU_CHIPS key, description template, device kind)
    "h100": ("H100", _HOPPER, "NVIDIA H100 80GB HBM3"),
    "h200": ("H200", _HOPPER, "NVIDIA H200"),
    "a100": ("A100", _AMPERE, "NVIDIA A100-SXM4-80GB"),
}
GPUS_PER_HOST = 8

TARGET_FORMS = ("tpu:<v4|v5e|v5p|v6e>:<AxB or AxBxC chips>", "gpu:<h100|h200|a100>x<GPUs>",
                "cpu:<devices>", "local (this process's devices)")


def chip_of_kind(kind: str) -> Chip | None:
  """The datasheet of a device kind as JAX reports it ('TPU v5 lite', 'NVIDIA H100 80GB HBM3'),
  or None when there is none here."""
  if kind in TPU_DEVICE_KINDS:
    return TPU_CHIPS[TPU_DEVICE_KINDS[kind]]
  return next((chip for name, chip in GPU_CHIPS.items() if re.search(rf"\b{name}\b", kind)),
              None)


class TargetError(ValueError):
  """A --target that cannot be compiled for; the message says what would work."""


@dataclasses.dataclass(frozen=True)
class Target:
  """Devices to compile for, their platform and their chip's datasheet."""
  name: str
  platform: str
  devices: tuple
  chip: Chip

  @property
  def num_chips(self) -> int:
    return len(self.devices)


def parse(spec: str) -> Target:
  """The Target that `spec` names (see TARGET_FORMS); a bad name raises TargetError."""
  parts = spec.strip().lower().split(":")
  if parts[0] == "tpu" and len(parts) == 3:
    return _tpu(spec, parts[1], parts[2])
  if parts[0] == "cpu" and len(parts) == 2 and parts[1].isdigit() and int(parts[1]) > 0:
    return _cpu(spec, int(parts[1]))
  if parts == ["local"]:
    return _local()
  if parts[0] == "gpu" and len(parts) == 2:
    return _gpu(spec, parts[1])
  raise TargetError(f"--target {spec!r}: expected one of {', '.join(TARGET_FORMS)}")


def _tpu(spec: str, generation: str, topology: str) -> Target:
  if generation not in TPU_CHIPS:
    raise TargetError(f"--target {spec!r}: unknown TPU generation {generation!r}; known: "
                      f"{', '.join(TPU_CHIPS)}")
  if not re.fullmatch(r"\d+x\d+(x\d+)?", topology):
    raise TargetError(f"--target {spec!r}: topology {topology!r} is not AxB or AxBxC chips")
  try:
    import libtpu  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    raise TargetError(f"--target {spec!r} needs the TPU compiler: pip install -r "
                      "requirements.txt (libtpu)") from None
  _quiet_compile_only_libtpu()
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  extra = {"chip_config_name": "megacore"} if generation in MEGACORE else {}
  try:
    devices = topologies.get_topology_desc(topology_name=f"{generation}:{topology}",
                                           platform="tpu", **extra).devices
  except Exception as error:  # pylint: disable=broad-except  (libtpu raises its own types)
    raise TargetError(f"--target {spec!r}: the TPU compiler rejected the topology: "
                      f"{str(error).splitlines()[0]}") from None
  return Target(spec, "tpu", tuple(devices), TPU_CHIPS[generation])


def _quiet_compile_only_libtpu() -> None:
  """Settings for libtpu when it only compiles: no lock on the (absent) chips, so other JAX
  processes on the host do not block it, and no queries of a TPU VM's metadata server."""
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  if target.process_platform() != "tpu":  # on a TPU VM these describe the real host: leave them
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    # libtpu asks for the host's own accelerator even when it only compiles; any valid name.
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-1")


def _gpu(spec: str, name: str) -> Target:
  found = re.fullmatch(r"([a-z0-9]+)x(\d+)", name)
  if not found or found[1] not in GPU_TARGETS or int(found[2]) < 1:
    raise TargetError(f"--target {spec!r}: expected gpu:<{'|'.join(GPU_TARGETS)}>x<GPUs>, "
                      "e.g. gpu:h100x8")
  count = int(found[2])
  if count > GPUS_PER_HOST and count % GPUS_PER_HOST:
    raise TargetError(f"--target {spec!r}: more than {GPUS_PER_HOST} GPUs come as whole hosts "
                      f"of {GPUS_PER_HOST}")
  if importlib.util.find_spec("jax_cuda12_plugin") is None:
    raise TargetError(f"--target {spec!r} needs the CUDA compiler (no GPU needed): pip install "
                      f"'jax[cuda12]=={jax.__version__}' (~5.5 GB)")
  chip_name, template, kind = GPU_TARGETS[found[1]]
  chip = GPU_CHIPS[chip_name]
  config = template % dict(bandwidth=chip.hbm_bytes_per_s, memory=chip.hbm_bytes, kind=kind)
  hosts, per_host = max(count // GPUS_PER_HOST, 1), min(count, GPUS_PER_HOST)
  # The plugin checks the CUDA libraries against a driver this host need not have.
  os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  try:
    devices = topologies.get_topology_desc(f"{found[1]}x{count}", "cuda", target_config=config,
                                           topology=f"1x{hosts}x{per_host}").devices
  except Exception as error:  # pylint: disable=broad-except  (the plugin raises its own types)
    raise TargetError(f"--target {spec!r}: the CUDA compiler rejected the topology: "
                      f"{str(error).splitlines()[0]}") from None
  return Target(spec, "gpu", tuple(devices), chip)


def _cpu(spec: str, count: int) -> Target:
  devices = jax.devices("cpu")
  if len(devices) < count:
    raise TargetError(f"--target {spec!r}: this process has {len(devices)} CPU device(s); start "
                      f"it with XLA_FLAGS=--xla_force_host_platform_device_count={count} "
                      "(experiments/compile.py does)")
  memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return Target(spec, "cpu", tuple(devices[:count]),
                Chip(f"CPU (host memory / {count} devices)", memory / count, None, None))


def _local() -> Target:
  devices = tuple(jax.devices())
  platform = target.platform_of(devices)
  if platform == "cpu":
    return _cpu("local", len(devices))
  kind = devices[0].device_kind
  chip = chip_of_kind(kind)
  if chip is None:
    limit = (devices[0].memory_stats() or {}).get("bytes_limit")
    if not limit:
      raise TargetError(f"--target local: no datasheet for device kind {kind!r} "
                        "(accelerators.chips.GPU_CHIPS) and it reports no memory limit")
    chip = Chip(kind, limit, None, None)
  return Target("local", platform, devices, chip)
