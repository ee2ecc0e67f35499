"""The phone's view of a model (the paper's reason for all this): weight memory, the largest
block against a 20 MB SRAM, and weight bytes read from DRAM per generated token.

Bytes-per-token model: decoding one token runs every effective layer once. A block's weights are
read from DRAM each time it runs, unless the same block ran just before and fits in SRAM (then it
is still there: immediate sharing's point, and the one repeat at each turn of 'reverse'). The
output head (vocab x dim) is read once per token; the input embedding reads one row (ignored).
"""

from mobilellm_jax.model.counting import param_counts
from mobilellm_jax.model.sharing import layer_schedule

SRAM_BYTES = 20 * 2**20  # ~20 MB on-chip memory of a phone SoC (the paper's figure)
FP16, INT8 = 2, 1


def device_footprint(m, sram_bytes: int = SRAM_BYTES) -> dict:
  counts = param_counts(m)
  block_bytes = counts["block_params"] * FP16
  fits = block_bytes <= sram_bytes
  schedule = layer_schedule(m.num_layers, m.layer_sharing, m.share_repeats)
  reads = sum(1 for i, block in enumerate(schedule)
              if not (fits and i > 0 and schedule[i - 1] == block))
  head_bytes = m.vocab_size * m.dim * FP16
  return dict(weights_mb_fp16=counts["params"] * FP16 / 1e6,
              weights_mb_int8=counts["params"] * INT8 / 1e6,
              largest_block_mb_fp16=block_bytes / 1e6,
              fits_sram_20mb=fits,
              block_reads_per_token=reads,
              weight_bytes_per_token=reads * block_bytes + head_bytes)
