"""AdamW with the paper's recipe: linear warmup, cosine to a fraction of peak, global-norm clip.

Weight decay applies to every weight matrix (attention, FFN, the embedding and a separate head);
RMSNorm scales are not decayed (decaying a gain towards 0 only hurts; LLaMA-style practice).
"""

import jax
import jax.numpy as jnp
import optax

from mobilellm_jax.training import target


def lr_schedule(optim_config, num_steps: int) -> optax.Schedule:
  """0 -> peak over warmup_steps, then cosine to peak * final_lr_ratio at num_steps."""
  o = optim_config
  warmup = min(o.warmup_steps, max(num_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=o.peak_lr, warmup_steps=warmup,
      decay_steps=max(num_steps, warmup + 1), end_value=o.peak_lr * o.final_lr_ratio)


def decay_mask(params):
  """True for parameters that get weight decay: everything but norm scales."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) != "scale", params)


def global_norm(tree) -> jax.Array:
  """sqrt(sum of squares of every element of every leaf), like optax.tree.norm.

  On CPU each leaf's sum of squares is a dot product of the leaf with itself over all its axes:
  XLA:CPU lowers `sum(x * x)` of a large leaf as a full-size x * x written out and then a
  reduce-window over it, while the dot lowers to one pass over the flat buffer (visible in a
  `--profile` of bench/train_throughput.py --sizes 125m). Under sharding a dot over all axes is
  a local dot and an all-reduce, like the sum."""
  if target.platform() != "cpu":
    return optax.tree.norm(tree)
  squares = [jax.lax.dot_general(x, x, ((tuple(range(x.ndim)),) * 2, ((), ())),
                                 preferred_element_type=jnp.float32) for x in jax.tree.leaves(tree)]
  return jnp.sqrt(sum(squares, jnp.zeros((), jnp.float32)))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
  """optax.clip_by_global_norm as one scalar factor, min(1, max_norm / norm), times every gradient.

  optax's version divides each element by the norm under a select; XLA:CPU then writes a clipped
  copy of every gradient, because both of Adam's moments read it. A multiply by one scalar fuses
  into each reader instead, saving a read and a write of every gradient per step (most visible at
  MobileLLM-125M's shapes, bench/train_throughput.py --sizes 125m). Unclipped gradients pass
  through exactly (the factor is 1.0); clipped ones differ from optax's by rounding only. Same
  state (none)."""
  def update(updates, state, params=None):
    del params
    factor = jnp.minimum(1.0, max_norm / global_norm(updates))
    return jax.tree.map(lambda t: t * factor.astype(t.dtype), updates), state
  return optax.GradientTransformation(optax.init_empty_state, update)


def make_optimizer(optim_config, num_steps: int) -> optax.GradientTransformation:
  o = optim_config
  adamw = optax.adamw(lr_schedule(o, num_steps), b1=o.b1, b2=o.b2, eps=o.eps,
                      weight_decay=o.weight_decay, mask=decay_mask)
  if o.grad_clip > 0:
    return optax.chain(clip_by_global_norm(o.grad_clip), adamw)
  return adamw
