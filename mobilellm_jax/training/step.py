"""Pure functions of the training state: loss, init, the train step (with gradient
accumulation) and the eval step, and `jit_train_step` / `jit_eval_step`, which jit them for a
mesh as `loop.py` runs them and `accelerators/aot.py` compiles them for a target it does not
have; tests and benchmarks call the same functions.

The train state is a plain dict: params (pure nested dict of arrays, merged into the NNX graph
inside the step), opt_state (optax), step, and first_bad_step (-1 until a loss is NaN/Inf: found
on device without a host sync every step, checked by the loop at log/checkpoint steps).
"""

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mobilellm_jax.ops import losses
from mobilellm_jax.training import optim, target


def compiler_options(platform: str | None = None) -> dict | None:
  """XLA options for the train and eval steps compiled for `platform` (default: this process's;
  `jax.jit(..., compiler_options=)`).

  On CPU, YNNPACK (XLA:CPU's matmul library) keeps the matmuls but not the reductions: the
  pinned jaxlib also hands it row reductions (RMSNorm's mean of squares, its gradient's sums),
  which run slower there than in XLA's own loops inside the scan over layers (measured by a
  `--profile` of bench/train_throughput.py; docs/performance.md). None elsewhere."""
  if (platform or target.platform()) != "cpu":
    return None
  return {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def loss_fn(params, graphdef, batch):
  """Mean next-token loss; the head matmul is fused into a chunked cross-entropy (ops/losses.py)."""
  hidden_BxLxD, head_VxD = nnx.merge(graphdef, params).features(batch["inputs"])
  targets_BxL = batch["targets"]
  chunk = losses.chunk_length(*targets_BxL.shape, head_VxD.shape[0], dim=head_VxD.shape[1])
  return losses.fused_cross_entropy(hidden_BxLxD, head_VxD, targets_BxL, chunk)


def init_train_state(params, optimizer: optax.GradientTransformation) -> dict:
  return dict(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32),
              first_bad_step=jnp.full((), -1, jnp.int32))


def state_shardings(params, optimizer: optax.GradientTransformation, param_shardings,
                    mesh) -> dict:
  """Shardings of `init_train_state(params, optimizer)`: each optimizer moment like its parameter
  (under fsdp the moments are most of the state), counters replicated. Left to XLA's propagation,
  the moments, made from zeros, came out replicated."""
  abstract = jax.eval_shape(lambda p: init_train_state(p, optimizer), params)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  opt_state = optax.tree_map_params(optimizer, lambda _, s: s, abstract["opt_state"],
                                    param_shardings, transform_non_params=lambda _: replicated)
  return dict(params=param_shardings, opt_state=opt_state, step=replicated,
              first_bad_step=replicated)


def _microbatches(batch, num_micro: int):
  """[B, ...] -> [num_micro, B/num_micro, ...], microbatch i = rows i, i+A, i+2A, ... so each
  device's contiguous rows stay on that device (no reshuffle across the data axis)."""
  def split(x):
    return jnp.swapaxes(x.reshape(x.shape[0] // num_micro, num_micro, *x.shape[1:]), 0, 1)
  return jax.tree.map(split, batch)


def loss_and_grads(params, graphdef, batch, grad_accum_steps: int):
  """Mean loss and its gradient over the batch, summed over microbatches when accumulating."""
  grad_fn = jax.value_and_grad(loss_fn)
  if grad_accum_steps == 1:
    return grad_fn(params, graphdef, batch)

  def accumulate(carry, micro):
    loss, grads = grad_fn(params, graphdef, micro)
    return jax.tree.map(jnp.add, carry, (loss, grads)), None

  zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
  (loss, grads), _ = jax.lax.scan(accumulate, zeros, _microbatches(batch, grad_accum_steps))
  return jax.tree.map(lambda x: x / grad_accum_steps, (loss, grads))


def train_step(state: dict, batch, *, graphdef, optimizer, schedule, grad_accum_steps: int,
               param_shardings=None):
  """One optimizer step. Returns (new state, metrics). With `param_shardings` each gradient is
  laid out like its parameter, so under fsdp the optimizer update runs on each device's shard."""
  loss, grads = loss_and_grads(state["params"], graphdef, batch, grad_accum_steps)
  if param_shardings is not None:
    grads = jax.lax.with_sharding_constraint(grads, param_shardings)
  updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  newly_bad = (state["first_bad_step"] < 0) & ~jnp.isfinite(loss)
  first_bad_step = jnp.where(newly_bad, state["step"] + 1, state["first_bad_step"])
  metrics = dict(loss=loss, grad_norm=optim.global_norm(grads), lr=schedule(state["step"]))
  return dict(params=params, opt_state=opt_state, step=state["step"] + 1,
              first_bad_step=first_bad_step), metrics


def eval_step(params, batch, *, graphdef):
  """Summed loss and token count of one batch (so passes average over tokens exactly)."""
  loss = loss_fn(params, graphdef, batch)
  count = batch["targets"].size
  return loss * count, jnp.asarray(count, jnp.float32)


def jit_train_step(mesh, state_shardings, batch_sharding, *, graphdef, optimizer, schedule,
                   grad_accum_steps: int):
  """`train_step` jitted for `mesh` (its platform picks the kernels, target.py), with the state's
  and batch's shardings, the old state donated, and that platform's compiler options."""
  return target.jit(
      functools.partial(train_step, graphdef=graphdef, optimizer=optimizer, schedule=schedule,
                        grad_accum_steps=grad_accum_steps,
                        param_shardings=state_shardings["params"]),
      mesh, in_shardings=(state_shardings, batch_sharding), out_shardings=(state_shardings, None),
      donate_argnums=0, compiler_options=compiler_options(target.platform_of(mesh)))


def jit_eval_step(mesh, *, graphdef):
  """`eval_step` jitted for `mesh` (shardings come with its arguments)."""
  return target.jit(functools.partial(eval_step, graphdef=graphdef), mesh,
                    compiler_options=compiler_options(target.platform_of(mesh)))
