"""Layer sharing as a schedule over the unique blocks 0..N-1 (the paper numbers them 1..N).

- none:       0..N-1
- immediate:  0,0,1,1,..  (each block k times in a row; stays in cache on a phone)
- repeat_all: 0..N-1, 0..N-1, ..  (k passes)
- reverse:    0..N-1, N-1..0, 0..N-1, ..  (k passes, alternating direction)
Effective depth = N x k.
"""

STRATEGIES = ("none", "immediate", "repeat_all", "reverse")


def layer_passes(strategy: str, repeats: int) -> list[tuple[bool, int]]:
  """The schedule as passes over all blocks: (reversed?, times each block runs in a row)."""
  if strategy not in STRATEGIES:
    raise ValueError(f"unknown layer_sharing {strategy!r}; expected one of {list(STRATEGIES)}")
  if repeats < 1:
    raise ValueError(f"share_repeats must be >= 1, got {repeats}")
  if strategy in ("none", "immediate"):
    return [(False, repeats)]
  if strategy == "repeat_all":
    return [(False, 1)] * repeats
  return [(k % 2 == 1, 1) for k in range(repeats)]


def layer_schedule(num_layers: int, strategy: str, repeats: int) -> list[int]:
  """The unique-block index run at each effective layer, in order."""
  order = []
  for reverse, inner in layer_passes(strategy, repeats):
    blocks = range(num_layers - 1, -1, -1) if reverse else range(num_layers)
    order += [i for i in blocks for _ in range(inner)]
  return order
