"""Pure functions of the training state: loss, init, the train step (with gradient
accumulation) and the eval step. `train.py` jits them with shardings and `compiler_options()`;
tests and benchmarks call the same functions.

The train state is a plain dict: params (pure nested dict of arrays, merged into the NNX graph
inside the step), opt_state (optax), step, and first_bad_step (-1 until a loss is NaN/Inf: found
on device without a host sync every step, checked by the loop at log/checkpoint steps).
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mobilellm_jax import losses, optim


def compiler_options() -> dict | None:
  """XLA options for the compiled train and eval steps (`jax.jit(..., compiler_options=)`).

  On CPU, YNNPACK (XLA:CPU's matmul library) keeps the matmuls but not the reductions: the
  pinned jaxlib also hands it row reductions (RMSNorm's mean of squares, its gradient's sums),
  which ran about 2x slower than XLA's own loops inside the scan over layers (bench/README.md,
  session 9). None elsewhere."""
  if jax.default_backend() != "cpu":
    return None
  return {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def loss_fn(params, graphdef, batch):
  """Mean next-token loss; the head matmul is fused into a chunked cross-entropy (losses.py)."""
  hidden_BxLxD, head_VxD = nnx.merge(graphdef, params).features(batch["inputs"])
  targets_BxL = batch["targets"]
  chunk = losses.chunk_length(*targets_BxL.shape, head_VxD.shape[0], dim=head_VxD.shape[1])
  return losses.fused_cross_entropy(hidden_BxLxD, head_VxD, targets_BxL, chunk)


def init_train_state(params, optimizer: optax.GradientTransformation) -> dict:
  return dict(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32),
              first_bad_step=jnp.full((), -1, jnp.int32))


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


def train_step(state: dict, batch, *, graphdef, optimizer, schedule, grad_accum_steps: int):
  """One optimizer step. Returns (new state, metrics)."""
  loss, grads = loss_and_grads(state["params"], graphdef, batch, grad_accum_steps)
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
