"""A scan over layers whose backward pass keeps each layer's saved values in stacks that start
unwritten.

jax.lax.scan differentiates a loop over layers by stacking every value the backward pass needs
([layers, ...] per value), and it zero-fills each stack before the forward loop writes every
slot of it: a pass of writes over memory that the loop overwrites anyway (XLA:CPU has no
uninitialised allocation; the fills show as broadcast ops in a `--profile` of
bench/train_throughput.py). `scan_layers` runs the same loop with a hand-written VJP: the
forward loop runs each layer under jax.vjp and writes the pullback's saved values into stacks
that a native call hands over unwritten; the backward loop reads each layer's values back and
calls its pullback.
Saved values that are the layer's own parameters or the shared constants are not stacked: the
backward loop takes them from its inputs.

It runs when compiling for CPU (training/target.py) with the native library built and the Shardy partitioner (JAX's default), which
gives each stack the sharding its writes have (the batch's, under data parallelism): the call is
partitioned through custom_partitioning. Elsewhere it is jax.lax.scan.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.extend.mlir import ir

from mobilellm_jax.ops import native
from mobilellm_jax.training import target


def scan_layers(layer_fn, x, stacked_params, consts, *, reverse: bool = False):
  """x through layer_fn(x, params[i], consts) for i = 0..N-1 (N-1..0 if reverse), where
  params[i] is layer i's slice of every leaf of `stacked_params`. `consts` reach every layer
  unchanged and are not differentiated."""
  consts = jax.lax.stop_gradient(consts)
  if _unwritten_stacks_available():
    return _scan(layer_fn, reverse, x, stacked_params, consts)
  body = lambda carry, params: (layer_fn(carry, params, consts), None)
  return jax.lax.scan(body, x, stacked_params, reverse=reverse)[0]


def _unwritten_stacks_available() -> bool:
  return (target.platform() == "cpu" and jax.config.jax_use_shardy_partitioner
          and native.build_error() is None)


def _uninitialised_call(shape, dtype, slot: int):
  native.load()
  return jax.ffi.ffi_call("mobilellm_uninitialised", jax.ShapeDtypeStruct(shape, dtype))(
      slot=np.int64(slot))


@functools.partial(custom_partitioning, static_argnums=(0, 1, 2))
def uninitialised(shape, dtype, slot: int, like):
  """An array of `shape` whose contents are whatever memory XLA gave it. `slot` tells calls of
  the same shape apart, so that XLA does not merge them into one buffer. `like` is not read: it
  gives the call an operand, which custom_partitioning needs; the result takes the sharding that
  propagation from its users gives it."""
  del like
  return _uninitialised_call(shape, dtype, slot)


def _uninitialised_rule(shape, dtype, slot, mesh, operand_types, result_types):
  del dtype, slot, mesh, result_types
  like = " ".join(f"l{d}" for d in range(ir.RankedTensorType(operand_types[0]).rank))
  return f"{like} -> " + " ".join(f"d{d}" for d in range(len(shape)))


def _uninitialised_partition(shape, dtype, slot, mesh, arg_shapes, result_shape):
  local = result_shape.sharding.shard_shape(shape)
  return (mesh, lambda like: _uninitialised_call(local, dtype, slot), result_shape.sharding,
          (arg_shapes[0].sharding,))


uninitialised.def_partition(partition=_uninitialised_partition, sharding_rule=_uninitialised_rule)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _scan(layer_fn, reverse, x, stacked_params, consts):
  body = lambda carry, params: (layer_fn(carry, params, consts), None)
  return jax.lax.scan(body, x, stacked_params, reverse=reverse)[0]


def _sources(pullback, params, consts):
  """Where each of a pullback's leaves comes from: ("param", j) or ("const", j) when it is that
  input leaf itself, else ("saved", k), the k-th value to stack."""
  inputs = {id(leaf): ("param", j) for j, leaf in enumerate(jax.tree.leaves(params))}
  inputs.update({id(leaf): ("const", j) for j, leaf in enumerate(jax.tree.leaves(consts))})
  sources, saved = [], 0
  for leaf in jax.tree.leaves(pullback):
    if id(leaf) in inputs:
      sources.append(inputs[id(leaf)])
    else:
      sources.append(("saved", saved))
      saved += 1
  return tuple(sources)


def _saved(leaves, sources):
  """The pullback leaves that _sources marks to be stacked, in order."""
  return [leaf for leaf, (kind, _) in zip(leaves, sources) if kind == "saved"]


def _layer_pullback(layer_fn, x, stacked_params, consts):
  """(treedef, sources, abstract saved values) of one layer's pullback, from an abstract trace."""
  one = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape[1:], p.dtype), stacked_params)
  found = {}

  def trace(x, params, consts):
    _, pullback = jax.vjp(layer_fn, x, params, consts)
    found["sources"] = _sources(pullback, params, consts)
    return pullback

  pullback = jax.eval_shape(trace, x, one, consts)
  leaves, treedef = jax.tree.flatten(pullback)
  return treedef, found["sources"], _saved(leaves, found["sources"])


def _fwd(layer_fn, reverse, x, stacked_params, consts):
  _, sources, saved = _layer_pullback(layer_fn, x, stacked_params, consts)
  n = jax.tree.leaves(stacked_params)[0].shape[0]
  stacks = [uninitialised((n, *v.shape), v.dtype, slot, x) for slot, v in enumerate(saved)]

  def body(carry, xs):
    h, stacks = carry
    params, i = xs
    h, pullback = jax.vjp(layer_fn, h, params, consts)
    if _sources(pullback, params, consts) != sources:
      raise AssertionError("layer_scan: a layer's pullback changed between two traces")
    values = _saved(jax.tree.leaves(pullback), sources)
    stacks = [jax.lax.dynamic_update_index_in_dim(s, v, i, 0) for s, v in zip(stacks, values)]
    return (h, stacks), None

  (y, stacks), _ = jax.lax.scan(body, (x, stacks), (stacked_params, jnp.arange(n)),
                                reverse=reverse)
  return y, (stacked_params, consts, stacks)


def _bwd(layer_fn, reverse, residuals, dy):
  stacked_params, consts, stacks = residuals
  treedef, sources, _ = _layer_pullback(layer_fn, dy, stacked_params, consts)
  const_leaves = jax.tree.leaves(consts)

  def body(dh, xs):
    params, saved = xs
    inputs = {"param": jax.tree.leaves(params), "const": const_leaves, "saved": saved}
    pullback = jax.tree.unflatten(treedef, [inputs[kind][j] for kind, j in sources])
    dh, dparams, _ = pullback(dh)
    return dh, dparams

  dx, dstacked = jax.lax.scan(body, dy, (stacked_params, stacks), reverse=not reverse)
  return dx, dstacked, jax.tree.map(jnp.zeros_like, consts)


_scan.defvjp(_fwd, _bwd)
