"""Device mesh from config, and the one rules table from logical axis names to mesh axes.

Mesh axes: 'data' (batch only), 'fsdp' (batch and parameters/optimizer state), 'tensor'
(heads / kv heads / mlp / vocab). The same code runs on 1 CPU, 8 fake CPU devices, a GPU or a pod;
only the three sizes in config.train change.
"""

import functools
import math

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from mobilellm_jax.training import target
from mobilellm_jax.configs.validation import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# Logical name -> mesh axis (or axes). Names absent here are replicated.
LOGICAL_RULES = {
    "batch": ("data", "fsdp"),
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "head_dim": None,
    "layers": None,
}


def mesh_shape(train_config, num_devices: int) -> tuple[int, int, int]:
  """(data, fsdp, tensor) sizes; one of them may be -1 = fill. Errors name the field."""
  sizes = [train_config.mesh_data, train_config.mesh_fsdp, train_config.mesh_tensor]
  fixed = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % fixed:
      raise ConfigError(f"config.train.mesh_*: {num_devices} devices are not divisible by the fixed "
                       f"mesh axes (product {fixed}); sizes {sizes}")
    sizes[sizes.index(-1)] = num_devices // fixed
  if math.prod(sizes) != num_devices:
    raise ConfigError(f"config.train.mesh_data x mesh_fsdp x mesh_tensor = {math.prod(sizes)} must "
                     f"equal the number of devices ({num_devices}); sizes {sizes}")
  return tuple(sizes)


def make_mesh(train_config, devices=None) -> jax.sharding.Mesh:
  devices = jax.devices() if devices is None else devices
  shape = mesh_shape(train_config, len(devices))
  return jax.sharding.Mesh(np.asarray(devices).reshape(shape), MESH_AXES,
                           axis_types=(AxisType.Auto,) * 3)


def logical_to_spec(logical_axes, shape, mesh) -> PartitionSpec:
  """PartitionSpec for an array; a dimension that a mesh axis does not divide is replicated
  (e.g. 3 kv heads on a 2-way tensor axis), and a mesh axis is used at most once per array."""
  used, spec = set(), []
  for name, size in zip(logical_axes, shape):
    rule = LOGICAL_RULES.get(name)
    axes = tuple(a for a in ((rule,) if isinstance(rule, str) else rule or ())
                 if a not in used and mesh.shape[a] > 1)
    if axes and size % math.prod(mesh.shape[a] for a in axes) == 0:
      used.update(axes)
      spec.append(axes[0] if len(axes) == 1 else axes)
    else:
      spec.append(None)
  return PartitionSpec(*spec)


def constrain(x, logical_axes):
  """x laid out as `logical_axes` say (LOGICAL_RULES) on the mesh being compiled for
  (target.compiling_for); unchanged outside one. Left to itself, XLA's propagation met batch
  rows and parameters both split over 'fsdp' by splitting the matmuls' contraction and gathering
  the whole batch (token ids, [B, chunk, V] logits, per-layer activations summed whole on every
  device): pinning activations to the batch split makes the parameters the ones gathered, as
  fsdp means (a several-fold cut in temporaries per chip at MobileLLM-350M on a v5e-16,
  experiments/compile.py; the optimizer state is sharded too: train_step.state_shardings).
  Not on CPU, whose devices share one host's memory: there the pins only moved roundings of the
  2x2x2 test mesh by an ulp."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or tuple(mesh.axis_names) != MESH_AXES or target.platform() == "cpu":
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(logical_axes, x.shape, mesh))


def constrain_gradient(x, logical_axes):
  """`x` unchanged, and its gradient laid out as `logical_axes` say where it is made: under fsdp
  a weight gradient, a sum over the batch rows each device holds, is then reduced straight onto
  the weight's shards (a reduce-scatter). A None in `logical_axes` leaves that dimension to the
  partitioner (so heads keep their tensor layout). Wanted where slices of one gradient feed
  several parameters (the q/k/v projection concatenated for one matmul): left to XLA, the
  gradient was all-reduced whole and each slice cut its shards out of it. No-op on CPU and off a
  mesh, as `constrain`."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or tuple(mesh.axis_names) != MESH_AXES or target.platform() == "cpu":
    return x
  spec = logical_to_spec(logical_axes, x.shape, mesh)
  spec = PartitionSpec(*(PartitionSpec.UNCONSTRAINED if name is None else axes
                         for name, axes in zip(logical_axes, spec)))
  return _gradient_laid_out(x, spec)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _gradient_laid_out(x, spec):
  del spec
  return x


def _gradient_laid_out_fwd(x, spec):
  del spec
  return x, None


def _gradient_laid_out_bwd(spec, _, gradient):
  # The barrier keeps the partitioner's shard slice the only reader of the reduction, so the
  # TPU compiler fuses the two into a reduce-scatter instead of merging the slice into the
  # slices that follow.
  return (jax.lax.optimization_barrier(jax.lax.with_sharding_constraint(gradient, spec)),)


_gradient_laid_out.defvjp(_gradient_laid_out_fwd, _gradient_laid_out_bwd)


def _map_variables(state, fn) -> dict:
  """A pure nested dict with fn(variable) in place of each nnx Variable."""
  return {key: fn(value) if isinstance(value, nnx.Variable) else _map_variables(value, fn)
          for key, value in state.items()}


def param_shardings(abstract_state, mesh) -> dict:
  """NamedShardings (a pure dict, like the params) from the Variables' logical axis names."""
  def one(variable):
    names = variable.get_metadata().get("out_sharding") or (None,) * variable.ndim
    return NamedSharding(mesh, logical_to_spec(names, variable.shape, mesh))
  return _map_variables(abstract_state, one)


def check_batch_divides(train_config, mesh) -> None:
  """Each microbatch must split evenly over the batch axes (data x fsdp); fail before compiling."""
  ways = mesh.shape["data"] * mesh.shape["fsdp"]
  micro = train_config.batch_size // train_config.grad_accum_steps
  if micro % ways:
    raise ConfigError(
        f"config.train.batch_size: {train_config.batch_size} sequences "
        f"({train_config.grad_accum_steps} microbatches of {micro}) do not split over the "
        f"{ways} devices of mesh axes data x fsdp; use a multiple of {ways * train_config.grad_accum_steps}")


def batch_sharding(mesh) -> NamedSharding:
  """[B, L] token batches: batch split over data x fsdp."""
  return NamedSharding(mesh, logical_to_spec(("batch", None), (0, 0), mesh))


def init_compiler_options(platform: str | None = None) -> dict | None:
  """Compiling for CPU (default: this process's platform), LLVM optimisation level 1 for the
  init program: it compiles in a fraction of the time, runs no slower and makes bit-identical
  parameters (tested; bench/compile_time.py measures it). None elsewhere."""
  return {"xla_backend_optimization_level": 1} if (platform or target.platform()) == "cpu" else None


def init_sharded(make_module, mesh):
  """(graphdef, params, shardings) of `make_module()`: params is a pure nested dict of arrays,
  each created directly in its sharded layout (shapes from `nnx.eval_shape`, values from a jit
  with out_shardings), so no full copy ever sits on one device."""
  graphdef, abstract_state = nnx.split(nnx.eval_shape(make_module))
  shardings = param_shardings(abstract_state, mesh)
  params = jax.jit(lambda: nnx.to_pure_dict(nnx.state(make_module())), out_shardings=shardings,
                   compiler_options=init_compiler_options(target.platform_of(mesh)))()
  return graphdef, params, shardings
