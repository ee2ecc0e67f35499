"""Writes docs/paper_fit.md: every paper preset at the paper's recipe (sequence 2048, 1024
sequences a step) compiled for TPU slices from this host, with what fits, memory per chip, what
XLA's and the blocked attention would need at that setting, and estimated days
(mobilellm_jax/accelerators/paper_fit.py). Generated, not typed; tests/test_paper_fit.py regenerates a row.

    python bench/paper_fit_table.py                            # every preset x slice (hours on 2 busy cores)
    python bench/paper_fit_table.py --update --presets mobilellm_350m,mobilellm_350m_ls   # those rows, in place
    python bench/paper_fit_table.py --presets mobilellm_125m --slices tpu:v5e:4x4 --output -
"""

import argparse
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile-only: no accelerator in this process

# pylint: disable=wrong-import-position
from mobilellm_jax.accelerators import aot, paper_fit

INTRO = """# The paper's presets on TPU slices (generated)

Written by `python bench/paper_fit_table.py`, which regenerates every row
(`--update --presets P,.. --slices S,..` regenerates those rows in place); do not edit by hand
(`tests/test_paper_fit.py` regenerates a row and compares). Each row is the paper's recipe,
sequence 2048 and {batch} sequences per step, compiled for the slice from a CPU host with the TPU
compiler (`experiments/compile.py`): the first setting that fits, searched from the preset's own
(data-parallel, no remat, `attention=auto`: on TPU the Pallas kernel `pallas_tpu`) mesh in the
order `mobilellm_jax/accelerators/fit_search.py` gives. memory/chip is what the compiled train step holds per
chip (arguments + temporaries + outputs not written over the donated state + code) against the
chip's HBM. The columns
{others}
are what the train step with that attention kernel needs at the same setting: "(refused)" where
the compiler refused it for lack of memory (the figure its message gives), "-" where it was not
compiled (rows whose attention is `xla` come from a search with `xla` as the TPU kernel;
`--update` regenerates them with `pallas_tpu`). Step times and days are ESTIMATES from the
datasheet peak, not measurements: the roofline is the executed FLOPs (ours, plus what remat
recomputes) at 100% of peak; days use {mfu:.0%} MFU. The paper's column is its own figure: days
on 32 A100s for 1T tokens.
"""


def _pairs(args) -> list:
  return [(p, s) for s in args.slices.split(",") for p in args.presets.split(",")]


def _existing_rows(path: str) -> dict:
  """{(preset, slice): row} of the table at `path`."""
  with open(path) as f:
    lines = [l for l in f.read().splitlines() if l.startswith("| ") and l != paper_fit.HEADER]
  return {(l.split("|")[1].strip(), l.split("|")[3].strip()): l for l in lines}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--presets", default=",".join(paper_fit.PRESETS))
  parser.add_argument("--slices", default=",".join(paper_fit.SLICES))
  parser.add_argument("--output", default="docs/paper_fit.md", help="'-' prints instead")
  parser.add_argument("--update", action="store_true",
                      help="regenerate only these rows of the existing --output, keep the rest")
  args = parser.parse_args(argv)
  rows = _existing_rows(args.output) if args.update else {}
  for preset, slice_spec in _pairs(args):
    rows[(preset, slice_spec)] = paper_fit.format_row(paper_fit.search_row(preset, slice_spec))
    print(rows[(preset, slice_spec)], file=sys.stderr, flush=True)
  order = [(p, s) for s in paper_fit.SLICES for p in paper_fit.PRESETS]
  keys = sorted(rows, key=lambda key: order.index(key) if key in order else len(order))
  lines = [paper_fit.HEADER, paper_fit.RULE] + [rows[key] for key in keys]
  text = INTRO.format(batch=paper_fit.PAPER_BATCH, mfu=aot.ASSUMED_MFU,
                      others=" and ".join(f"`{k}: memory/chip`" for k in paper_fit.OTHER_KERNELS))
  text += "\n" + "\n".join(lines) + "\n"
  if args.output == "-":
    print(text)
  else:
    with open(args.output, "w") as f:
      f.write(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
