"""Log-likelihoods of token sequences under a model: jitted pure functions of the split model,
batches of rows bucketed by length.

Padding is on the right: with causal attention a position never sees the ones after it, so the
log-probabilities of the real tokens are the same as without padding (tested). Rows are padded to
a few bucket lengths and every batch has the same number of rows, so a whole evaluation compiles
once per bucket. Per-token log-probabilities come back in float32; sums are taken in float64.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mobilellm_jax.evaluation.encoding import request_window

_PAD_ID = 0  # Any id works: padded positions are never read by real ones nor scored.


def split_model(model):
  """An nnx Decoder, or an already split (graphdef, state) pair -> (graphdef, state)."""
  if isinstance(model, tuple) and len(model) == 2:
    return model
  if isinstance(model, nnx.Module):
    return nnx.split(model)
  raise TypeError(f"expected an nnx Decoder or a (graphdef, state) pair, got "
                  f"{type(model).__name__}")


def max_seq_len(graphdef, state) -> int:
  """model.args.max_seq_len (merging only re-wraps the arrays; nothing is copied)."""
  return nnx.merge(graphdef, state).args.max_seq_len


@functools.partial(jax.jit, static_argnums=0)
def token_logprobs(graphdef, state, inputs_BxL, targets_BxL):
  """log p(targets[b, t] | inputs[b, :t+1]) for every position, float32 [B, L]."""
  logits_BxLxV = nnx.merge(graphdef, state)(inputs_BxL).astype(jnp.float32)
  target_logits_BxL = jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
  return target_logits_BxL - jax.nn.logsumexp(logits_BxLxV, axis=-1)


@functools.partial(jax.jit, static_argnums=0)
def _row_logprobs(graphdef, state, inputs_BxL, last_B):
  """Per row: log p(inputs[b, t+1] | inputs[b, :t+1]) [B, L] (its last column is unused),
  and the whole next-token distribution after the row's last real token, log p(. | row) [B, V]."""
  logits_BxLxV = nnx.merge(graphdef, state)(inputs_BxL).astype(jnp.float32)
  logz_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
  next_BxL = jnp.concatenate([inputs_BxL[:, 1:], inputs_BxL[:, -1:]], axis=1)
  next_logits_BxL = jnp.take_along_axis(logits_BxLxV, next_BxL[..., None], axis=-1)[..., 0]
  rows_B = jnp.arange(inputs_BxL.shape[0])
  last_BxV = logits_BxLxV[rows_B, last_B] - logz_BxL[rows_B, last_B][:, None]
  return next_logits_BxL - logz_BxL, last_BxV


def bucket_lengths(max_len: int, smallest: int = 32, per_octave: int = 4) -> list[int]:
  """Row lengths: `per_octave` steps per doubling from `smallest` (32, 40, 48, 56, 64, 80, ...)
  up to max_len, then max_len. On the eight tasks at max_len 256 this computes 6.64M tokens for
  6.06M real ones (13 compiles); 1.5x steps would compute 7.30M (7 compiles)."""
  lengths, size = set(), smallest
  while size < max_len:
    lengths.update(size + size * k // per_octave for k in range(per_octave))
    size *= 2
  return sorted(n for n in lengths if n < max_len) + [max_len]


def loglikelihoods(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]], *,
                   max_len: int | None = None, batch_size: int = 32,
                   per_octave: int = 4) -> np.ndarray:
  """Sum of log p(continuation | context) per (context ids, continuation ids) request, float64.
  Contexts are left-truncated so each request fits `max_len` tokens (default model.max_seq_len).

  Requests whose model inputs are identical (BoolQ's ' yes'/' no': the inputs stop before the
  final token) share one row: their targets differ only in that final token, which is read from
  the row's full next-token distribution."""
  graphdef, state = split_model(model)
  limit = max_seq_len(graphdef, state)
  max_len = max_len or limit
  if not 0 < max_len <= limit:
    raise ValueError(f"max_len={max_len} must be in [1, model.max_seq_len={limit}]")
  row_of, rows, requests_of_row = {}, [], []
  finals, num_scored = np.zeros(len(requests), np.int64), np.zeros(len(requests), np.int64)
  for index, (context, continuation) in enumerate(requests):
    inputs, targets, num_scored[index] = request_window(context, continuation, max_len)
    finals[index] = targets[-1] if len(targets) else _PAD_ID
    row = row_of.setdefault(inputs.tobytes(), len(rows))
    if row == len(rows):
      rows.append(inputs)
      requests_of_row.append([])
    requests_of_row[row].append(index)
  buckets = np.asarray(bucket_lengths(max_len, per_octave=per_octave))
  bucket_of = buckets[np.searchsorted(buckets, [len(r) for r in rows])]
  # Longest first within a bucket, as lm-eval does; any order gives the same scores.
  order = sorted(range(len(rows)), key=lambda i: (bucket_of[i], -len(rows[i])))
  scores = np.zeros(len(requests), np.float64)

  def collect(batch, last_B, outputs):
    logp_BxL, last_BxV = jax.device_get(outputs)
    for b, row in enumerate(batch):
      for index in requests_of_row[row]:
        n, last = num_scored[index], last_B[b]
        if n:  # Tokens before the final one are the row's own next tokens; the final is read apart.
          scores[index] = (np.sum(logp_BxL[b, last - n + 1:last], dtype=np.float64)
                           + float(last_BxV[b, finals[index]]))

  start, pending = 0, None
  while start < len(order):
    length = bucket_of[order[start]]
    batch = [i for i in order[start:start + batch_size] if bucket_of[i] == length]
    start += len(batch)
    inputs_BxL = np.full((batch_size, length), _PAD_ID, np.int32)
    last_B = np.zeros(batch_size, np.int32)
    for b, row in enumerate(batch):
      inputs_BxL[b, :len(rows[row])] = rows[row]
      last_B[b] = len(rows[row]) - 1
    # Dispatch this batch before reading the previous one, so host work overlaps the compute.
    outputs = _row_logprobs(graphdef, state, inputs_BxL, last_B)
    if pending:
      collect(*pending)
    pending = (batch, last_B, outputs)
  if pending:
    collect(*pending)
  return scores
