"""Causal grouped-query attention by splash attention, JAX's Pallas flash-attention kernel for
TPU (jax.experimental.pallas.ops.tpu.splash_attention): the 'pallas_tpu' kernel of attention.py.

The kernel walks query x key tiles in on-chip memory with an online softmax and skips the tiles
above the diagonal, so neither pass writes [L, L] scores to HBM; the backward pass recomputes them
from the per-row log-sum-exp. Query head h reads kv head h // G straight from K/V (the kernel's
grouped mode), so K/V are never repeated H/K times in memory.

The kernel works heads-major ([H, L, E] per sequence); the model's q, k, v are sequence-major.
Our custom VJP keeps the backward pass's residuals sequence-major (the output is then the same
array the output projection saves) and calls splash's forward and backward kernels on transposed
copies: a TPU pads the 64-wide minor axis of a heads-major array to 128 lanes, so saving splash's
own heads-major residuals would double every layer's q, k, v and output in memory. The backward
kernels are splash's private `_splash_attention_bwd` (the public kernel only offers its whole
VJP); the interpret-mode tests check the gradients against the plain formula.

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
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash_kernel

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
  """One sequence's kernel: q [H, L, E], k and v [K, L, E] -> ([H, L, E], log-sum-exp [H, L]),
  causal."""
  mask = splash.MultiHeadMask([splash.CausalMask((length, length))] * num_heads)
  sizes = splash.BlockSizes(block_q=tile, block_kv=tile, block_kv_compute=tile,
                            block_q_dkv=tile, block_kv_dkv=tile, block_kv_dkv_compute=tile,
                            block_q_dq=tile, block_kv_dq=tile)
  return splash.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                                save_residuals=True, interpret=interpret)


def _flat_blocks(mask_info):
  # What splash's own entry point does to a mask before its kernels read it.
  blocks = mask_info.partial_mask_blocks
  if blocks is None:
    return mask_info
  return mask_info._replace(partial_mask_blocks=blocks.reshape(-1, *blocks.shape[-2:]))


def _backward(kernel, q, k, v, out, lse, dout):
  """Splash's backward kernels (dk/dv, then dq) on one sequence, heads-major."""
  options = kernel.kwargs
  residuals = (q, k, v, None, None, out, lse, _flat_blocks(kernel.dq_mask_info),
               _flat_blocks(kernel.dkv_mask_info))
  grads = splash_kernel._splash_attention_bwd(  # pylint: disable=protected-access
      False, options["mask_value"], options["is_mqa"], options["block_sizes"],
      options["residual_checkpoint_name"], options["mask_function"],
      options["attn_logits_soft_cap"], options["interpret"], residuals, dout)
  return grads[3:6]


def _heads_major(x_BxLxNxE, padded: int):
  L = x_BxLxNxE.shape[1]
  return jnp.pad(x_BxLxNxE.transpose(0, 2, 1, 3), ((0, 0), (0, 0), (0, padded - L), (0, 0)))


def _scaled(q_BxLxHxE):
  # The kernel applies no scale; exact in bfloat16 when E is a power of 4.
  return (q_BxLxHxE.astype(jnp.float32) * q_BxLxHxE.shape[-1] ** -0.5).astype(q_BxLxHxE.dtype)


def _local_setup(q_BxLxHxE, tile: int, interpret: bool):
  L, H = q_BxLxHxE.shape[1:3]
  tile = tile_for(L, tile)
  padded = -(-L // tile) * tile
  with jax.ensure_compile_time_eval():  # the mask tables are constants, never traced values
    return _kernel(H, padded, tile, interpret), padded


def _local_forward(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, *, tile: int, interpret: bool):
  """(output [B, L, H, E], log-sum-exp [B, H, padded L]) on one device's rows and heads."""
  kernel, padded = _local_setup(q_BxLxHxE, tile, interpret)
  L = q_BxLxHxE.shape[1]
  out_BxHxLxE, (lse_BxHxL,) = jax.vmap(kernel)(_heads_major(_scaled(q_BxLxHxE), padded),
                                              _heads_major(k_BxLxKxE, padded),
                                              _heads_major(v_BxLxKxE, padded))
  return out_BxHxLxE[:, :, :L].transpose(0, 2, 1, 3), lse_BxHxL


def _local_backward(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, out_BxLxHxE, lse_BxHxL, dout_BxLxHxE, *,
                    tile: int, interpret: bool):
  """(dq, dk, dv), sequence-major, on one device's rows and heads. Padded query rows carry a zero
  output gradient, so they add nothing to dk and dv."""
  kernel, padded = _local_setup(q_BxLxHxE, tile, interpret)
  L = q_BxLxHxE.shape[1]
  # Without the barrier XLA finds the heads-major copies below identical to the forward pass's
  # and keeps those alive until here instead: the padded layout this VJP exists to avoid.
  q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, out_BxLxHxE = jax.lax.optimization_barrier(
      (q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, out_BxLxHxE))
  dq, dk, dv = jax.vmap(functools.partial(_backward, kernel))(
      *(_heads_major(x, padded) for x in (_scaled(q_BxLxHxE), k_BxLxKxE, v_BxLxKxE, out_BxLxHxE)),
      lse_BxHxL, _heads_major(dout_BxLxHxE, padded))
  sequence_major = lambda x: x[:, :, :L].transpose(0, 2, 1, 3)
  return _scaled(sequence_major(dq)), sequence_major(dk), sequence_major(dv)


def _partition_spec(k_shape):
  """The shard_map spec of q, k, v and the output under the mesh being compiled for: batch over
  data x fsdp, heads over tensor when it divides the kv heads; None outside a mesh."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return None
  if tuple(mesh.axis_names) != sharding.MESH_AXES:
    return jax.sharding.PartitionSpec()  # a mesh of other axes: every device runs it whole
  return sharding.logical_to_spec(("batch", None, "kv_heads", None), k_shape, mesh)


def _sharded(local, q_spec, lse_spec, in_kinds: str, out_kinds: str):
  """`local` under shard_map with each array's spec given by its kind: 'a' a [B, L, heads, E]
  array, 'l' a log-sum-exp [B, H, L]; `local` itself outside a mesh."""
  if q_spec is None:
    return local
  specs = {"a": q_spec, "l": lse_spec}
  # check_vma=False: pallas_call does not declare how its outputs vary over the mesh axes.
  return jax.shard_map(local, mesh=jax.sharding.get_abstract_mesh(),
                       in_specs=tuple(specs[c] for c in in_kinds),
                       out_specs=tuple(specs[c] for c in out_kinds), check_vma=False)


def _specs(k_shape):
  spec = _partition_spec(k_shape)
  if spec is None or len(spec) == 0:
    return spec, spec
  batch, _, heads, _ = (*spec, None, None, None)[:4]  # a spec may omit trailing axes
  return spec, jax.sharding.PartitionSpec(batch, heads, None)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, tile: int, interpret: bool):
  return _attention_fwd(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, tile, interpret)[0]


def _attention_fwd(q, k, v, tile, interpret):
  q_spec, lse_spec = _specs(k.shape)
  forward = functools.partial(_local_forward, tile=tile, interpret=interpret)
  out, lse = _sharded(forward, q_spec, lse_spec, "aaa", "al")(q, k, v)
  # Saved sequence-major, as they came in: splash's own VJP would save heads-major copies,
  # whose 64-wide minor axis a TPU pads to 128 lanes, and its output twice (the output
  # projection saves the sequence-major one).
  return out, (q, k, v, out, lse)


def _attention_bwd(tile, interpret, residuals, dout):
  q, k, v, out, lse = residuals
  q_spec, lse_spec = _specs(k.shape)
  backward = functools.partial(_local_backward, tile=tile, interpret=interpret)
  return _sharded(backward, q_spec, lse_spec, "aaaala", "aaa")(q, k, v, out, lse, dout)


_attention.defvjp(_attention_fwd, _attention_bwd)


def splash_attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, *, tile: int = TILE,
                     interpret: bool | None = None):
  """softmax(q k^T / sqrt(E) + causal mask) v per query head, K/V shared by H/K heads
  (sequence-major [B, L, heads, E]). `interpret`: Pallas's interpreter instead of the TPU
  compiler; default: off TPU targets (target.platform())."""
  if interpret is None:
    interpret = target.platform() != "tpu"
  return _attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, tile, interpret)
