"""Running the C++ kernels on each device's share of the batch when jit shards the batch.

XLA cannot look inside a custom call, so its SPMD partitioner would gather every operand whole
onto every device and run the kernel on the full batch on each of them: correct, but N times the
work on an N-device mesh. Every kernel here treats batch rows independently (dim 0 of each
operand and result), so `batch_split` tells the partitioner, through `custom_partitioning`, to
run it on the local rows; any other sharded dimension (e.g. heads on the tensor axis) is gathered
first. On one device it lowers to the plain call. Needs the Shardy partitioner (JAX's default).
"""

import math

import jax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.extend.mlir import ir
from jax.sharding import NamedSharding, PartitionSpec


def _batch_axes(mesh, arg_shapes):
  """The mesh axes sharding dim 0 of the first operand, if every operand's batch divides by
  them; else None (replicate)."""
  spec = arg_shapes[0].sharding.spec
  axes = spec[0] if len(spec) else None
  if axes is None:
    return None
  ways = math.prod(mesh.shape[name] for name in (axes if isinstance(axes, tuple) else (axes,)))
  if any(a.shape[0] % ways for a in arg_shapes):
    return None
  return axes


def batch_split(fn, num_static: int = 0):
  """`fn(*static, *arrays)` -> an array or a tuple of arrays, all with the batch as dim 0, which
  compute each batch row from the same rows of the operands. The first `num_static` arguments
  are Python values (attributes, head counts). Returns fn, partitioned over the batch."""
  static = tuple(range(num_static))
  split = custom_partitioning(fn, static_argnums=static)

  def rule(*args):
    *_, operand_types, result_types = args
    mappings, others = [], []
    for kind, types in (("operand", operand_types), ("result", result_types)):
      names = []
      for i, t in enumerate(types):
        dims = [f"{kind}{i}_{d}" for d in range(1, ir.RankedTensorType(t).rank)]
        others += dims
        names.append(" ".join(["batch", *dims]))
      mappings.append(", ".join(names))
    return " -> ".join(mappings), dict(need_replication_factors=tuple(others))

  def partition(*args):
    *static_values, mesh, arg_shapes, result_shape = args
    sharding = NamedSharding(mesh, PartitionSpec(_batch_axes(mesh, arg_shapes)))
    arg_shardings = tuple(sharding for _ in arg_shapes)
    result_shardings = jax.tree.map(lambda _: sharding, result_shape)
    return mesh, lambda *local: fn(*static_values, *local), result_shardings, arg_shardings

  split.def_partition(partition=partition, sharding_rule=rule)

  def call(*args):
    # The older GSPMD partitioner (jax_use_shardy_partitioner=False) hands custom_partitioning
    # uneven shardings it cannot decode (kv heads 2 on a tensor axis of 4): there the kernels
    # keep running on gathered operands, as before.
    return split(*args) if jax.config.jax_use_shardy_partitioner else fn(*args)

  return call
