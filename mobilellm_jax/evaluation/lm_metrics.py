"""Perplexity and bits-per-byte: on a split of the training corpus, or on any text.

loss = mean over scored tokens of -log p (nats/token); perplexity = exp(loss);
bits_per_byte = sum(-log p) / ln 2 / (UTF-8 bytes the scored tokens stand for; bytecount.py).
Bits-per-byte compares models with different tokenizers; loss and perplexity only with the same.
"""

import math
from pathlib import Path

import numpy as np

from mobilellm_jax.data import DataError, load_tokenizer, make_eval_iterator
from mobilellm_jax.evaluation import bytecount
from mobilellm_jax.evaluation.scoring import max_seq_len, split_model, token_logprobs


def _summary(nll: float, tokens: int, num_bytes: int | None) -> dict:
  if tokens == 0:
    raise ValueError("nothing to score: no tokens")
  loss = nll / tokens
  return {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens, "bytes": num_bytes,
          "bits_per_byte": nll / math.log(2) / num_bytes if num_bytes else None}


def perplexity(model, config, split: str = "validation", max_batches: int | None = None,
               batch_size: int | None = None) -> dict:
  """{'loss', 'perplexity', 'bits_per_byte', 'tokens', 'bytes', 'bytes_exact'} over the eval
  batches of `split` (make_eval_iterator: data.seq_len windows; every token of the split is a
  target once, up to the last full batch). bits_per_byte is None if no tokenizer is available
  (pre-tokenized jsonl without data.tokenizer_path). Every process scores the whole split."""
  graphdef, state = split_model(model)
  try:
    counter = bytecount.byte_counter(config, split, load_tokenizer(config))
  except DataError:
    if not config.data.dataset.startswith("jsonl:"):
      raise
    counter = None  # Token ids without their tokenizer: no bytes to count.
  nll, tokens, num_bytes = 0.0, 0, 0
  for batch in make_eval_iterator(config, split, max_batches=max_batches, batch_size=batch_size):
    logp_BxL = token_logprobs(graphdef, state, batch["inputs"], batch["targets"])
    nll -= float(np.asarray(logp_BxL, np.float64).sum())
    tokens += int(logp_BxL.size)
    if counter is not None:
      num_bytes += counter(batch["inputs"], batch["targets"])
  result = _summary(nll, tokens, num_bytes if counter is not None else None)
  result["bytes_exact"] = bool(counter is not None and counter.exact)
  return result


def perplexity_of_text(model, tokenizer, text: str, seq_len: int, *, batch_size: int = 8) -> dict:
  """{'loss', 'perplexity', 'bits_per_byte', 'tokens', 'bytes'} of `text` as one document:
  EOS (document start) + its tokens, cut into windows of seq_len targets (no overlap, each token
  predicted once, as the eval batches). bytes = len(text.encode('utf-8')), exactly."""
  graphdef, state = split_model(model)
  if not 0 < seq_len <= max_seq_len(graphdef, state):
    raise ValueError(f"seq_len={seq_len} must be in [1, model.max_seq_len]")
  ids, sizes = bytecount.text_token_bytes(tokenizer, text)
  if ids.size == 0:
    raise ValueError("perplexity_of_text needs a non-empty text")
  stream = np.concatenate([[tokenizer.eos_id], ids]).astype(np.int32)
  starts = list(range(0, ids.size, seq_len))
  nll = 0.0
  for first in range(0, len(starts), batch_size):
    inputs_BxL = np.zeros((batch_size, seq_len), np.int32)
    targets_BxL = np.zeros((batch_size, seq_len), np.int32)
    scored_BxL = np.zeros((batch_size, seq_len), bool)
    for row, start in enumerate(starts[first:first + batch_size]):
      window = stream[start:start + seq_len + 1]
      inputs_BxL[row, :window.size - 1] = window[:-1]
      targets_BxL[row, :window.size - 1] = window[1:]
      scored_BxL[row, :window.size - 1] = True
    logp_BxL = np.asarray(token_logprobs(graphdef, state, inputs_BxL, targets_BxL), np.float64)
    nll -= float(np.where(scored_BxL, logp_BxL, 0.0).sum())
  return _summary(nll, int(ids.size), int(sizes.sum()))


def perplexity_of_file(model, tokenizer, path: str | Path, seq_len: int, **kwargs) -> dict:
  """perplexity_of_text of a UTF-8 text file (read as bytes: no newline translation)."""
  return perplexity_of_text(model, tokenizer, Path(path).read_bytes().decode("utf-8"), seq_len,
                            **kwargs)
