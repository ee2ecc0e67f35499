"""Causal grouped-query attention by splash attention, JAX's Pallas flash-attention kernel for
TPU (jax.experimental.pallas.ops.tpu.splash_attention): the 'pallas_tpu' kernel of attention.py.

The kernel walks query x key tiles in on-chip memory with an online softmax and skips the tiles
above the diagonal, so neither pass writes [L, L] scores to HBM; the backward pass recomputes them
from the per-row log-sum-exp. Query head h reads kv head h // G straight from K/V (the kernel's
grouped mode), so K/V are never repeated H/K times in memory.

XLA does not partition Mosaic kernels: under a mesh the kernel runs inside `jax.shard_map`, each
device on its own batch rows (mesh axes data x fsdp) and, when the tensor axis divides the kv
heads, its own heads (the query heads of a kv head stay with it). Sequences are padded to a
whole number of tiles: padded keys come after every real query, so the causal mask hides them,
and padded query rows are dropped. Off TPU the kernel runs in Pallas's interpret mode (the tests).

Shapes: B batch, L sequence, H query heads, K kv heads, E head_dim.
"""

import functools

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as splash

from mobilellm_jax.training import sharding, target

LANES = 128  # the TPU vector width: key tiles are multiples of it
TILE = 512  # query and key positions per kernel tile at long sequences (MaxText's default)


def tile_for(length: int, tile: int = TILE) -> int:
  """The tile used at sequence `length`: `tile`, or the sequence rounded up to LANES if shorter."""
  if tile % LANES:
    raise ValueError(f"splash attention tiles must be multiples of {LANES}, not {tile}")
  return min(tile, -(-length // LANES) * LANES)


@functools.lru_cache(maxsize=32)
def _kernel(num_heads: int, length: int, tile: int, interpret: bool):
  """One sequence's kernel: q [H, L, E], k and v [K, L, E] -> [H, L, E], causal."""
  mask = splash.MultiHeadMask([splash.CausalMask((length, length))] * num_heads)
  sizes = splash.BlockSizes(block_q=tile, block_kv=tile, block_kv_compute=tile,
                            block_q_dkv=tile, block_kv_dkv=tile, block_kv_dkv_compute=tile,
                            block_q_dq=tile, block_kv_dq=tile)
  return splash.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                                interpret=interpret)


def _local_attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, *, tile: int, interpret: bool):
  """The kernel on one device's rows and heads, vmapped over the batch."""
  L, H, E = q_BxLxHxE.shape[1:]
  tile = tile_for(L, tile)
  padded = -(-L // tile) * tile

  def heads_major(x_BxLxNxE):
    return jnp.pad(x_BxLxNxE.transpose(0, 2, 1, 3), ((0, 0), (0, 0), (0, padded - L), (0, 0)))

  # Scaled before the kernel (which applies no scale); exact in bfloat16 when E is a power of 4.
  q = heads_major((q_BxLxHxE.astype(jnp.float32) * E ** -0.5).astype(q_BxLxHxE.dtype))
  with jax.ensure_compile_time_eval():  # the mask tables are constants, never traced values
    kernel = _kernel(H, padded, tile, interpret)
  out_BxHxLxE = jax.vmap(kernel)(q, heads_major(k_BxLxKxE), heads_major(v_BxLxKxE))
  return out_BxHxLxE[:, :, :L].transpose(0, 2, 1, 3)


def _partition_spec(k_shape):
  """The shard_map spec of q, k, v and the output under the mesh being compiled for: batch over
  data x fsdp, heads over tensor when it divides the kv heads; None outside a mesh."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return None
  if tuple(mesh.axis_names) != sharding.MESH_AXES:
    return jax.sharding.PartitionSpec()  # a mesh of other axes: every device runs it whole
  return sharding.logical_to_spec(("batch", None, "kv_heads", None), k_shape, mesh)


def splash_attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, *, tile: int = TILE,
                     interpret: bool | None = None):
  """softmax(q k^T / sqrt(E) + causal mask) v per query head, K/V shared by H/K heads
  (sequence-major [B, L, heads, E]). `interpret`: Pallas's interpreter instead of the TPU
  compiler; default: off TPU targets (target.platform())."""
  if interpret is None:
    interpret = target.platform() != "tpu"
  local = functools.partial(_local_attention, tile=tile, interpret=interpret)
  spec = _partition_spec(k_BxLxKxE.shape)
  if spec is None:
    return local(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE)
  # check_vma=False: pallas_call does not declare how its outputs vary over the mesh axes.
  return jax.shard_map(local, mesh=jax.sharding.get_abstract_mesh(), in_specs=(spec,) * 3,
                       out_specs=spec, check_vma=False)(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE)
