"""The platform a program is compiled for: the one place every execution path asks.

The C++ kernels (ops/native/), the kernel attention's 'auto' picks (ops/attention.py), the
layer-scan variant (ops/layer_scan.py), the loss's chunk size (ops/losses.py), the CPU-only
rewrites in ops/dense.py and optim.py, and the compiler options (step.py, sharding.py) all depend
on where the program will run. That is the platform of the mesh it is compiled for, which need not
be this process's: experiments/compile.py compiles for a TPU slice from a CPU host. While tracing
under `compiling_for(mesh)` (`jit` enters it) the answer is that mesh's platform; elsewhere it is
the process's default backend. The mesh enters through JAX's abstract-mesh context, which is part
of JAX's trace-cache keys, so a trace made for one platform is never reused for another.
"""

import contextlib

import jax
import numpy as np


def process_platform() -> str:
  """'cpu', 'gpu' or 'tpu': the platform this process runs on (jax's default backend)."""
  return jax.default_backend()


def platform() -> str:
  """The platform of the program being traced: the mesh of `compiling_for`, else this process's."""
  device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
  return device.platform if device is not None else process_platform()


def platform_of(mesh_or_devices) -> str:
  """The platform of a mesh's devices or of a list of devices (default: this process's)."""
  devices = getattr(mesh_or_devices, "devices", mesh_or_devices)
  flat = np.asarray([] if devices is None else devices, dtype=object).ravel()
  return flat[0].platform if flat.size else process_platform()


@contextlib.contextmanager
def compiling_for(mesh: jax.sharding.Mesh):
  """Within this block, code traced sees `mesh`'s platform as `platform()`."""
  with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
    yield


class _TargetedJit:
  """A jitted function whose traces (on call or `.lower`) are made under `compiling_for(mesh)`."""

  def __init__(self, jitted, mesh):
    self._jitted, self._mesh = jitted, mesh

  def __call__(self, *args, **kwargs):
    with compiling_for(self._mesh):
      return self._jitted(*args, **kwargs)

  def lower(self, *args, **kwargs):
    with compiling_for(self._mesh):
      return self._jitted.lower(*args, **kwargs)


def jit(fn, mesh: jax.sharding.Mesh, **jit_kwargs) -> _TargetedJit:
  """jax.jit(fn, **jit_kwargs), traced for `mesh`'s platform (see the module docstring)."""
  return _TargetedJit(jax.jit(fn, **jit_kwargs), mesh)
