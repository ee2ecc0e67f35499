"""Writes docs/paper_fit.md: every paper preset at the paper's recipe (sequence 2048, 1024
sequences a step) compiled for TPU slices from this host, with what fits, memory per chip and
estimated days (mobilellm_jax/paper_fit.py). Generated, not typed; tests/test_paper_fit.py
regenerates a row.

    python bench/paper_fit_table.py                            # every preset x slice (an hour or more on 2 cores)
    python bench/paper_fit_table.py --presets mobilellm_125m --slices tpu:v5e:4x4 --output -
"""

import argparse
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile-only: no accelerator in this process

# pylint: disable=wrong-import-position
from mobilellm_jax import aot, paper_fit

INTRO = """# The paper's presets on TPU slices (generated)

Written by `{command}`; do not edit by hand
(`tests/test_paper_fit.py` regenerates a row and compares). Each row is the paper's recipe,
sequence 2048 and {batch} sequences per step, compiled for the slice from a CPU host with the TPU
compiler (`experiments/compile.py`): the first setting that fits, searched from the preset's own
(data-parallel, no remat) mesh in the order `mobilellm_jax/fit_search.py` gives. memory/chip is
what the compiled train step holds per chip (arguments + temporaries + outputs not written over
the donated state + code) against the chip's HBM. Step times and days are ESTIMATES from the
datasheet peak, not measurements: the roofline is the executed FLOPs (ours, plus what remat
recomputes) at 100% of peak; days use {mfu:.0%} MFU. The paper's column is its own figure: days on
32 A100s for 1T tokens.
"""


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--presets", default=",".join(paper_fit.PRESETS))
  parser.add_argument("--slices", default=",".join(paper_fit.SLICES))
  parser.add_argument("--output", default="docs/paper_fit.md", help="'-' prints instead")
  args = parser.parse_args(argv)
  lines = [paper_fit.HEADER, paper_fit.RULE]
  for slice_spec in args.slices.split(","):
    for preset in args.presets.split(","):
      row = paper_fit.format_row(paper_fit.search_row(preset, slice_spec))
      print(row, file=sys.stderr, flush=True)
      lines.append(row)
  command = " ".join(["python bench/paper_fit_table.py", *(argv or sys.argv[1:])])
  text = INTRO.format(command=command.strip(), batch=paper_fit.PAPER_BATCH,
                      mfu=aot.ASSUMED_MFU) + "\n" + "\n".join(lines) + "\n"
  if args.output == "-":
    print(text)
  else:
    with open(args.output, "w") as f:
      f.write(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
