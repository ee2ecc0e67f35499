"""Zero-shot evaluation throughput: requests/s and the time for the eight full validation sets.

    python -m mobilellm_jax.data.prepare && python -m mobilellm_jax.evaluation.tasks   # once
    python bench/eval_throughput.py                       # cpu preset, random init, all 8 full sets
    python bench/eval_throughput.py --max_examples 300    # a subset per task; the full time is
                                                          # extrapolated from its tokens/s

A random-init model is enough for timing (the work does not depend on the weights); its
accuracies are printed next to chance and should sit near it. Windows are data.seq_len tokens
(the length the preset trains at), as zeroshot_from_config uses.
"""

import argparse
import time

import numpy as np

from mobilellm_jax.training import host_memory
from mobilellm_jax.configs import get_config
from mobilellm_jax.data import load_tokenizer
from mobilellm_jax.evaluation import TASKS, load_task, prepare_tasks, question_metrics
from mobilellm_jax.evaluation.encoding import encode_pairs, request_window
from mobilellm_jax.evaluation.scoring import bucket_lengths, loglikelihoods
from mobilellm_jax.model import build_model


def padded_tokens(requests, max_len: int, batch_size: int) -> int:
  """Tokens the scorer computes for these requests: one row per distinct input window, padded to
  its bucket, and each bucket's last batch padded to batch_size rows (as scoring.loglikelihoods)."""
  buckets = np.asarray(bucket_lengths(max_len))
  rows = {request_window(c, t, max_len)[0].tobytes(): len(request_window(c, t, max_len)[0])
          for c, t in requests}
  per_bucket = np.bincount(np.searchsorted(buckets, list(rows.values())), minlength=len(buckets))
  batches = -(-per_bucket // batch_size)
  return int((batches * batch_size * buckets).sum())


def warm_up(model, max_len: int, batch_size: int) -> float:
  """Compiles every bucket (one batch each) so the timed pass measures steady-state speed."""
  fake = [([1] * length, [2]) for length in bucket_lengths(max_len)]
  start = time.perf_counter()
  loglikelihoods(model, fake, max_len=max_len, batch_size=batch_size)
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="cpu")
  parser.add_argument("--tasks", default=",".join(TASKS))
  parser.add_argument("--max_examples", type=int, default=0, help="per task; 0 = all")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--max_len", type=int, default=0, help="0 = data.seq_len")
  args = parser.parse_args()

  config = get_config(args.preset)
  max_len = args.max_len or config.data.seq_len
  model = build_model(config.model, seed=0)
  tokenizer = load_tokenizer(config)
  prepare_tasks()
  names = args.tasks.split(",")
  print(f"preset {args.preset}: vocab {config.model.vocab_size}, max_len {max_len}, batch "
        f"{args.batch_size}, buckets {bucket_lengths(max_len)}")

  start = time.perf_counter()
  full = {t: load_task(t) for t in names}
  chosen = {t: full[t][:args.max_examples] if args.max_examples else full[t] for t in names}
  pairs = {t: [p for q in qs for p in zip(q.contexts, q.continuations)] for t, qs in full.items()}
  encoded_full = {t: encode_pairs(tokenizer, pairs[t]) for t in names}
  encode_s = time.perf_counter() - start
  encoded = [r for t in names
             for r in encoded_full[t][:sum(q.num_choices for q in chosen[t])]]

  compile_s = warm_up(model, max_len, args.batch_size)
  start = time.perf_counter()
  scores = loglikelihoods(model, encoded, max_len=max_len, batch_size=args.batch_size)
  score_s = time.perf_counter() - start
  computed = padded_tokens(encoded, max_len, args.batch_size)
  real = sum(len(w) for w in {request_window(c, t, max_len)[0].tobytes(): request_window(
      c, t, max_len)[0] for c, t in encoded}.values())  # distinct rows, as scored

  print(f"\n{'task':<14}{'questions':>10}{'requests':>10}{'acc':>8}{'acc_norm':>10}{'chance':>8}")
  offset, rows = 0, {}
  for t in names:
    count = sum(q.num_choices for q in chosen[t])
    rows[t] = question_metrics(chosen[t], scores[offset:offset + count])
    offset += count
    r = rows[t]
    print(f"{t:<14}{r['num_questions']:>10}{count:>10}{r['acc']:>8.3f}{r['acc_norm']:>10.3f}"
          f"{r['chance']:>8.3f}")
  print(f"{'average':<14}{'':>20}{np.mean([r['acc'] for r in rows.values()]):>8.3f}"
        f"{np.mean([r['acc_norm'] for r in rows.values()]):>10.3f}"
        f"{np.mean([r['chance'] for r in rows.values()]):>8.3f}")

  print(f"\nencode (all {sum(len(p) for p in pairs.values())} requests of the full sets): "
        f"{encode_s:.1f} s")
  print(f"compile: {compile_s:.1f} s for {len(bucket_lengths(max_len))} buckets (one batch each)")
  print(f"scored {len(encoded)} requests in {score_s:.1f} s after compiling: "
        f"{len(encoded) / score_s:.1f} requests/s, {computed / score_s:.0f} computed tokens/s "
        f"({real} in distinct rows + {computed - real} padding)")
  if args.max_examples:
    everything = [r for t in names for r in encoded_full[t]]
    full_tokens = padded_tokens(everything, max_len, args.batch_size)
    estimate = full_tokens / (computed / score_s) + compile_s + encode_s
    print(f"full sets ({len(everything)} requests, {full_tokens} computed tokens): estimated "
          f"{estimate:.0f} s = {estimate / 60:.1f} min in all (scoring extrapolated from the "
          "tokens/s above, + compile + encoding)")
  else:
    total = score_s + compile_s + encode_s
    print(f"full sets: {total:.0f} s = {total / 60:.1f} min in all (scoring + compile + encoding)")


if __name__ == "__main__":
  host_memory.keep_freed_memory()  # as the CLIs do (runtime.py): XLA:CPU reuses freed buffers
  main()
