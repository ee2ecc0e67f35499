"""docs/paper_fit.md is generated: a row regenerated from its own cells (one compile of the
setting, one per other attention kernel) is the row."""

import os

import pytest

from mobilellm_jax.accelerators import paper_fit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_a_row_of_the_paper_fit_table_regenerates_exactly():
  with open(os.path.join(REPO, "docs", "paper_fit.md")) as f:
    lines = f.read().splitlines()
  assert paper_fit.HEADER in lines
  rows = [l for l in lines if l.startswith("| ") and l != paper_fit.HEADER]
  assert {(r.split("|")[1].strip(), r.split("|")[3].strip()) for r in rows} == {
      (p, s) for p in paper_fit.PRESETS for s in paper_fit.SLICES}
  # Every row has the header's cells ("-" in those of kernels not compiled for it).
  width = len(paper_fit._cells(paper_fit.HEADER))
  assert all(len(paper_fit._cells(r)) == width for r in rows)
  # The smallest model on the first slice: one compile of its fitting setting, and one per other
  # attention kernel at that setting.
  row = next(r for r in rows if r.startswith(f"| mobilellm_125m | ") and paper_fit.SLICES[0] in r)
  assert paper_fit.has_others(row)
  preset, slice_spec, overrides = paper_fit.parse_row(row)
  assert paper_fit.format_row(paper_fit.compile_row(preset, slice_spec, overrides)) == row
