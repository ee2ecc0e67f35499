"""Generation with a KV cache: prefill the prompts, then one token per iteration of a compiled loop.

Every *execution* of a block in the layer-sharing schedule keeps its own keys and values (an
immediate x2 model over N blocks holds 2N caches): a block's second run reads the first run's
output, so its keys differ (the official code wrote both runs into one slot). Caches hold the K
key/value heads, not the H query heads. Prompts are right-padded: row b's prompt fills positions
0..len_b-1 and its new tokens follow at len_b, len_b+1, ..; a query sees only keys at positions up
to its own, so padding never reaches a row's logits.

The step is plain JAX over the Decoder's parameters (the pure dict checkpoints hold), with each
block's weights passed as their own arrays: every execution of block i reads the same buffers,
where a scan indexing the stack copied them per layer (much slower at MobileLLM-125M). The cost
is compile time growing with effective depth (bench/decode_throughput.py prints it).
Shapes: B batch, P prompt, S cache, T effective layers, W new tokens; D, H, K, E, F, V as
decoder.py.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mobilellm_jax.model.decoder import ModelArgs, apply_rope, rope_sin_cos
from mobilellm_jax.model.sharing import layer_schedule


@dataclasses.dataclass(frozen=True)
class Sampling:
  """How the next token is chosen: temperature 0 is greedy; top_k 0 and top_p 1 are off."""
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0


@dataclasses.dataclass(frozen=True)
class DecodeSpec:
  """What the decode program depends on beyond array shapes (a jit static argument): models that
  differ only elsewhere (tied head, init, training options) share compiled programs."""
  num_heads: int
  num_kv_heads: int
  head_dim: int
  gated: bool
  norm_eps: float
  rope_theta: float
  compute_dtype: str
  schedule: tuple[int, ...]  # the unique block run at each effective layer

  @classmethod
  def of(cls, args: ModelArgs) -> "DecodeSpec":
    return cls(args.num_heads, args.num_kv_heads, args.head_dim, args.ffn_type == "swiglu",
               args.norm_eps, args.rope_theta, args.compute_dtype,
               tuple(layer_schedule(args.num_layers, args.layer_sharing, args.share_repeats)))


def decode_weights(params: dict, args: ModelArgs) -> dict:
  """The parameters laid out for decoding: per unique block, q/k/v as one [D, (H+2K)E] matrix
  and gate/up as one [D, 2F] (one matmul each per token), in the compute dtype."""
  dt = jnp.dtype(args.compute_dtype)
  D, N = args.dim, args.num_layers
  b = params["blocks"]
  blocks = []
  for i in range(N):
    attn, ffn = b["attn"], b["ffn"]
    wqkv = jnp.concatenate([attn[name][i].reshape(D, -1) for name in
                            ("wq_DxHxE", "wk_DxKxE", "wv_DxKxE")], axis=1)
    up = ([ffn["w_gate_DxF"][i]] if args.ffn_type == "swiglu" else []) + [ffn["w_up_DxF"][i]]
    blocks.append(dict(attn_norm_D=b["attn_norm"]["scale"][i], ffn_norm_D=b["ffn_norm"]["scale"][i],
                       wqkv_DxM=wqkv.astype(dt), wo_MxD=attn["wo_HxExD"][i].reshape(-1, D).astype(dt),
                       w_in_DxF2=jnp.concatenate(up, axis=1).astype(dt),
                       w_down_FxD=ffn["w_down_FxD"][i].astype(dt)))
  head_VxD = params["embed_VxD"] if args.tie_embeddings else params["head_DxV"].T
  return dict(embed_VxD=params["embed_VxD"], final_norm_D=params["final_norm"]["scale"],
              head_VxD=head_VxD.astype(dt), blocks=blocks)


def init_cache(spec: DecodeSpec, batch: int, length: int) -> list[dict]:
  """Zeroed keys [B*K, E, S] and values [B*K, S, E] (row b's kv head k at b*K + k) for each of
  the schedule's T executions. These are the layouts the two attention products read as they
  lie (q @ k, p @ v), so a step does not transpose (copy) a cache; and no dimension is 1 at
  batch 1, which XLA:CPU drops, copying the cache around each write."""
  dt = jnp.dtype(spec.compute_dtype)
  rows, E = batch * spec.num_kv_heads, spec.head_dim
  return [dict(k=jnp.zeros((rows, E, length), dt), v=jnp.zeros((rows, length, E), dt))
          for _ in spec.schedule]


def _rms_norm(x_BxLxD, scale_D, eps):
  x32 = x_BxLxD.astype(jnp.float32)
  normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return (normed * scale_D.astype(jnp.float32)).astype(x_BxLxD.dtype)


def _write(cache, new, start_R, axis: int):
  """The cache [R, ...] with row r's L new entries (new [R, ..., L, ...]) written along `axis`
  at positions start_R[r] + 0..L-1. A per-row update, vmapped: one scatter whose rows are a
  batch dimension, so a cache sharded over rows is written where it lies (with explicit row
  indices the partitioner all-gathers the indices)."""
  def row(cache_row, new_row, start):
    corner = [0] * cache_row.ndim
    corner[axis - 1] = start
    return jax.lax.dynamic_update_slice(cache_row, new_row.astype(cache_row.dtype), corner)
  return jax.vmap(row)(cache, new, start_R)


def _block(spec: DecodeSpec, w, x_BxLxD, cache, positions_BxL, sin, cos):
  """One execution of a block on L new tokens (row b's at consecutive positions from
  positions_BxL[b, 0]): writes their keys and values into the cache, then attends over it,
  each query seeing the positions up to its own."""
  B, L, _ = x_BxLxD.shape
  H, K, E = spec.num_heads, spec.num_kv_heads, spec.head_dim
  G, S = H // K, cache["k"].shape[-1]
  qkv_BxLxM = _rms_norm(x_BxLxD, w["attn_norm_D"], spec.norm_eps) @ w["wqkv_DxM"]
  q_BxLxHxE = apply_rope(qkv_BxLxM[..., :H * E].reshape(B, L, H, E), sin, cos)
  k_BxLxKxE = apply_rope(qkv_BxLxM[..., H * E:(H + K) * E].reshape(B, L, K, E), sin, cos)
  v_BxLxKxE = qkv_BxLxM[..., (H + K) * E:].reshape(B, L, K, E)
  start_R = jnp.repeat(positions_BxL[:, 0], K)  # R = B*K cache rows
  cache = dict(k=_write(cache["k"], k_BxLxKxE.transpose(0, 2, 3, 1).reshape(B * K, E, L),
                        start_R, axis=2),
               v=_write(cache["v"], v_BxLxKxE.transpose(0, 2, 1, 3).reshape(B * K, L, E),
                        start_R, axis=1))
  q_RxGLxE = q_BxLxHxE.reshape(B, L, K, G, E).transpose(0, 2, 3, 1, 4).reshape(B * K, G * L, E)
  s_RxGLxS = jnp.einsum("rqe,res->rqs", q_RxGLxE, cache["k"],
                        preferred_element_type=jnp.float32) * E ** -0.5
  visible_BxLxS = jnp.arange(S)[None, None, :] <= positions_BxL[:, :, None]
  visible_RxGLxS = jnp.broadcast_to(visible_BxLxS[:, None, None], (B, K, G, L, S)).reshape(
      B * K, G * L, S)
  s_RxGLxS = jnp.where(visible_RxGLxS, s_RxGLxS, -jnp.inf)
  p_RxGLxS = jax.nn.softmax(s_RxGLxS, axis=-1).astype(x_BxLxD.dtype)
  out_RxGLxE = jnp.einsum("rqs,rse->rqe", p_RxGLxS, cache["v"])
  out_BxLxM = out_RxGLxE.reshape(B, K, G, L, E).transpose(0, 3, 1, 2, 4).reshape(B, L, H * E)
  x_BxLxD = x_BxLxD + out_BxLxM @ w["wo_MxD"]
  h_BxLxF2 = _rms_norm(x_BxLxD, w["ffn_norm_D"], spec.norm_eps) @ w["w_in_DxF2"]
  if spec.gated:
    gate, up = jnp.split(h_BxLxF2, 2, axis=-1)
    hidden_BxLxF = (jax.nn.silu(gate.astype(jnp.float32)) * up).astype(x_BxLxD.dtype)
  else:
    hidden_BxLxF = jax.nn.relu(h_BxLxF2)
  return x_BxLxD + hidden_BxLxF @ w["w_down_FxD"], cache


def forward(weights, spec: DecodeSpec, tokens_BxL, positions_BxL, caches):
  """(final-normed hidden [B, L, D], updated caches): the schedule's executions in order, each
  with its own cache."""
  x_BxLxD = jnp.take(weights["embed_VxD"], tokens_BxL, axis=0).astype(spec.compute_dtype)
  sin, cos = rope_sin_cos(positions_BxL, spec.head_dim, spec.rope_theta)
  caches = list(caches)
  for t, block in enumerate(spec.schedule):
    x_BxLxD, caches[t] = _block(spec, weights["blocks"][block], x_BxLxD, caches[t],
                                positions_BxL, sin, cos)
  return _rms_norm(x_BxLxD, weights["final_norm_D"], spec.norm_eps), caches


def _logits(weights, hidden_BxD):
  return jnp.einsum("bd,vd->bv", hidden_BxD, weights["head_VxD"],
                    preferred_element_type=jnp.float32)


def prefill(weights, spec: DecodeSpec, prompts_BxP, lengths_B, cache_len: int):
  """(logits [B, V] after each row's last prompt token, caches of cache_len positions)."""
  B, P = prompts_BxP.shape
  caches = init_cache(spec, B, cache_len)
  positions_BxP = jnp.broadcast_to(jnp.arange(P, dtype=jnp.int32), (B, P))
  hidden_BxPxD, caches = forward(weights, spec, prompts_BxP, positions_BxP, caches)
  last_BxD = jax.vmap(lambda h_PxD, i: h_PxD[i])(hidden_BxPxD, lengths_B - 1)
  return _logits(weights, last_BxD), caches


def sample(logits_BxV, key, sampling: Sampling):
  """Next tokens [B]: argmax at temperature 0, else a draw from the tempered distribution cut
  to its top_k tokens and to the smallest set whose probability reaches top_p."""
  if sampling.temperature == 0:
    return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
  logits_BxV = logits_BxV / sampling.temperature
  if sampling.top_k:
    kth_Bx1 = jax.lax.top_k(logits_BxV, sampling.top_k)[0][:, -1:]
    logits_BxV = jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)
  if sampling.top_p < 1:
    sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
    probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
    before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV  # mass of the tokens ranked above
    kept_BxV = jnp.where(before_BxV < sampling.top_p, sorted_BxV, jnp.inf)
    logits_BxV = jnp.where(logits_BxV < kept_BxV.min(axis=-1, keepdims=True), -jnp.inf, logits_BxV)
  return jax.random.categorical(key, logits_BxV, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("spec", "max_new_tokens", "sampling", "eos_id",
                                             "batch_sharding"))
def generate_tokens(weights, prompts_BxP, lengths_B, key, *, spec: DecodeSpec, max_new_tokens: int,
                    sampling: Sampling = Sampling(), eos_id: int | None = None,
                    batch_sharding=None):
  """(new tokens [B, W], count per row [B]): up to max_new_tokens per row, a row stopping after
  it emits eos_id (kept; the rest of the row is eos_id). One compiled while loop; the loop ends
  early when every row has stopped. `batch_sharding` (a NamedSharding of a [B] array) keeps
  the caches split over the batch on a mesh."""
  B, P = prompts_BxP.shape
  logits_BxV, caches = prefill(weights, spec, prompts_BxP, lengths_B, P + max_new_tokens)
  if batch_sharding is not None:
    cache_spec = jax.sharding.PartitionSpec(*batch_sharding.spec, None, None)
    caches = jax.lax.with_sharding_constraint(
        caches, jax.sharding.NamedSharding(batch_sharding.mesh, cache_spec))
  key, first_key = jax.random.split(key)
  pad = 0 if eos_id is None else eos_id

  def cond(carry):
    step, _, _, done_B, *_ = carry
    return (step < max_new_tokens) & ~jnp.all(done_B)

  def body(carry):
    step, token_B, out_BxW, done_B, count_B, caches, key = carry
    out_BxW = out_BxW.at[:, step].set(jnp.where(done_B, pad, token_B))
    count_B = count_B + (~done_B).astype(jnp.int32)
    if eos_id is not None:
      done_B = done_B | (token_B == eos_id)
    hidden_Bx1xD, caches = forward(weights, spec, token_B[:, None],
                                   (lengths_B + step)[:, None], caches)
    key, step_key = jax.random.split(key)
    next_B = sample(_logits(weights, hidden_Bx1xD[:, 0]), step_key, sampling)
    return step + 1, next_B, out_BxW, done_B, count_B, caches, key

  carry = (jnp.int32(0), sample(logits_BxV, first_key, sampling),
           jnp.full((B, max_new_tokens), pad, jnp.int32), jnp.zeros(B, bool),
           jnp.zeros(B, jnp.int32), caches, key)
  _, _, out_BxW, _, count_B, _, _ = jax.lax.while_loop(cond, body, carry)
  return out_BxW, count_B


@functools.partial(jax.jit, static_argnames=("spec",))
def teacher_forced_logits(weights, prompts_BxP, lengths_B, continuation_BxW, *, spec: DecodeSpec):
  """Logits [B, W+1, V] after each row's prompt and after each of the given next tokens, fed one
  at a time through the cache (a scan): what a full forward pass of the same tokens gives."""
  B, P = prompts_BxP.shape
  W = continuation_BxW.shape[1]
  logits_BxV, caches = prefill(weights, spec, prompts_BxP, lengths_B, P + W)

  def step(caches, inputs):
    offset, token_B = inputs
    hidden_Bx1xD, caches = forward(weights, spec, token_B[:, None], (lengths_B + offset)[:, None],
                                   caches)
    return caches, _logits(weights, hidden_Bx1xD[:, 0])

  _, logits_WxBxV = jax.lax.scan(step, caches, (jnp.arange(W), continuation_BxW.T))
  return jnp.concatenate([logits_BxV[:, None], logits_WxBxV.transpose(1, 0, 2)], axis=1)


def pad_prompts(prompts, batch_multiple: int = 1):
  """(tokens [B, P] right-padded with 0, lengths [B]); B rounded up to batch_multiple with copies
  of the last prompt (their outputs are dropped)."""
  prompts = [list(p) for p in prompts]
  if not prompts or any(not p for p in prompts):
    raise ValueError("every prompt needs at least one token")
  prompts += [prompts[-1]] * (-len(prompts) % batch_multiple)
  lengths = np.array([len(p) for p in prompts], np.int32)
  tokens = np.zeros((len(prompts), lengths.max()), np.int32)
  for row, prompt in enumerate(prompts):
    tokens[row, :len(prompt)] = prompt
  return tokens, lengths


class Generator:
  """Batched generation from a Decoder's parameters, on one device or with the batch split over
  a mesh's data x fsdp axes (weights replicated)."""

  def __init__(self, params: dict, args: ModelArgs, mesh=None):
    self.args, self.spec, self.mesh = args, DecodeSpec.of(args), mesh
    weights = jax.jit(decode_weights, static_argnums=1)(params, args)
    if mesh is not None:
      from mobilellm_jax.training import sharding  # pylint: disable=import-outside-toplevel
      weights = jax.device_put(weights, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
      self._ways = mesh.shape["data"] * mesh.shape["fsdp"]
      self._batch = jax.sharding.NamedSharding(
          mesh, sharding.logical_to_spec(("batch",), (self._ways,), mesh))
    else:
      self._ways, self._batch = 1, None
    self.weights = weights

  def __call__(self, prompts, max_new_tokens: int, sampling: Sampling = Sampling(),
               eos_id: int | None = None, seed: int = 0) -> list[list[int]]:
    """The new tokens of each prompt (lists of ids), up to and including eos_id."""
    tokens_BxP, lengths_B = pad_prompts(prompts, self._ways)
    longest = int(lengths_B.max()) + max_new_tokens
    if longest > self.args.max_seq_len:
      raise ValueError(f"prompt + max_new_tokens = {longest} tokens exceeds model.max_seq_len "
                       f"({self.args.max_seq_len})")
    if self._batch is not None:
      tokens_BxP = jax.device_put(tokens_BxP, jax.sharding.NamedSharding(
          self.mesh, jax.sharding.PartitionSpec(*self._batch.spec, None)))
      lengths_B = jax.device_put(lengths_B, self._batch)
    out_BxW, count_B = generate_tokens(
        self.weights, tokens_BxP, lengths_B, jax.random.key(seed), spec=self.spec,
        max_new_tokens=max_new_tokens, sampling=sampling, eos_id=eos_id,
        batch_sharding=self._batch)
    out_BxW, count_B = np.asarray(out_BxW), np.asarray(count_B)
    return [out_BxW[row, :count_B[row]].tolist() for row in range(len(prompts))]
