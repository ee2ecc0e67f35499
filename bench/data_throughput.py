"""Input pipeline throughput: tokens/s of make_train_iterator (and the eval iterator).

    python bench/data_throughput.py [--preset cpu] [--batches 500] [--num_workers 0]

Needs the embedded corpus (`python -m mobilellm_jax.data.prepare`). Prints numbers; not a test.
"""

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # Run from a checkout.

from mobilellm_jax.training import host_memory
from mobilellm_jax.configs import get_config
from mobilellm_jax.data import make_eval_iterator, make_train_iterator


def _rate(iterator, num_batches: int) -> tuple[float, int, float]:
  """(seconds, batches, tokens/s) over up to num_batches batches, after one warm-up batch."""
  first = next(iterator)
  tokens_per_batch = first["inputs"].size
  start, count = time.perf_counter(), 0
  for _ in range(num_batches):
    try:
      next(iterator)
    except StopIteration:
      break
    count += 1
  seconds = time.perf_counter() - start
  return seconds, count, count * tokens_per_batch / max(seconds, 1e-9)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="cpu")
  parser.add_argument("--batches", type=int, default=500)
  parser.add_argument("--num_workers", type=int, default=0)
  args = parser.parse_args()
  config = get_config(args.preset)
  config.data.num_workers = args.num_workers
  batch, seq_len = config.train.batch_size, config.data.seq_len
  print(f"preset={args.preset} batch={batch} seq_len={seq_len} vocab={config.model.vocab_size} "
        f"num_workers={args.num_workers}")

  start = time.perf_counter()
  train = make_train_iterator(config)
  print(f"train iterator ready in {time.perf_counter() - start:.2f}s (token cache warm)")
  seconds, count, rate = _rate(train, args.batches)
  print(f"train: {count} batches in {seconds:.2f}s = {count / seconds:,.0f} batches/s, "
        f"{rate:,.0f} tokens/s")

  state = train.get_state()
  start = time.perf_counter()
  train.set_state(state)
  next(train)
  print(f"train: set_state + next batch {1e3 * (time.perf_counter() - start):.1f} ms "
        f"(state {state})")
  train.close()  # Stops grain worker processes (num_workers > 0) before exit.

  start = time.perf_counter()
  evaluation = make_eval_iterator(config)
  count = sum(1 for _ in evaluation)
  seconds = time.perf_counter() - start
  print(f"eval ({config.data.eval_split}, whole split): {count} batches = "
        f"{count * batch * seq_len:,} tokens in {seconds:.3f}s incl. setup "
        f"({count * batch * seq_len / seconds:,.0f} tokens/s)")
  evaluation.close()


if __name__ == "__main__":
  host_memory.keep_freed_memory()  # as the CLIs do (runtime.py): XLA:CPU reuses freed buffers
  main()
