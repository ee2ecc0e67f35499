"""analysis/*.ipynb run top to bottom (nbclient) on fake sweeps and end in a computed verdict.

The results directory reaches each notebook through MOBILELLM_RESULTS_DIR (the kernel inherits
this process's environment). The four notebooks execute concurrently to keep the test short.
"""

import asyncio
import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.fixtures.analysis import fake_runs

ANALYSIS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "analysis")
NOTEBOOKS = ("depth_vs_width", "ablations", "layer_sharing", "scaling_fits")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """{notebook: executed NotebookNode}; depth_vs_width gets its sweep's directory, the others the
  directory of all sweeps (each notebook's documented default layout)."""
  root = str(tmp_path_factory.mktemp("runs"))
  for kind in fake_runs.KINDS:
    fake_runs.write_sweep(root, kind, seeds=(0, 1))
  results_dirs = {name: root for name in NOTEBOOKS}
  results_dirs["depth_vs_width"] = os.path.join(root, "depth_vs_width")
  notebooks = {name: nbformat.read(os.path.join(ANALYSIS_DIR, f"{name}.ipynb"), as_version=4)
               for name in NOTEBOOKS}

  async def run(name):
    client = NotebookClient(notebooks[name], timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": ANALYSIS_DIR}})
    # The kernel is a child process: the results directory goes in its environment.
    await client.async_execute(env=dict(os.environ, MOBILELLM_RESULTS_DIR=results_dirs[name]))

  async def run_all():
    await asyncio.gather(*(run(name) for name in NOTEBOOKS))

  asyncio.run(run_all())
  return notebooks


def _outputs(notebook, mime):
  return [o["data"][mime] for c in notebook.cells if c.cell_type == "code"
          for o in c.outputs if mime in o.get("data", {})]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_parameter_cell_is_tagged_and_reads_the_env_var(name):
  notebook = nbformat.read(os.path.join(ANALYSIS_DIR, f"{name}.ipynb"), as_version=4)
  first_code = next(c for c in notebook.cells if c.cell_type == "code")
  assert "parameters" in first_code.metadata.get("tags", [])
  assert 'os.environ.get("MOBILELLM_RESULTS_DIR"' in first_code.source
  assert '"results' in first_code.source  # the committed results are the default


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_executed_on_the_committed_results(name):
  notebook = nbformat.read(os.path.join(ANALYSIS_DIR, f"{name}.ipynb"), as_version=4)
  code = [c for c in notebook.cells if c.cell_type == "code"]
  assert all(c.execution_count for c in code), "run python analysis/run_notebooks.py"
  assert not [o for c in code for o in c.outputs if o.output_type == "error"]
  # What it read is the committed results directory, not a local runs/ or a temporary one.
  assert "results" in "".join(str(o.get("data", {}).get("text/plain", "")) for o in code[1].outputs)


@pytest.mark.parametrize("name, expected", [
    ("depth_vs_width", "deeper beat wider at 2.1M params on validation loss"),
    ("ablations", "**heads_kv**"),
    ("layer_sharing", "**repeat_count**"),
    ("scaling_fits", "N^-0.3"),
])
@pytest.mark.slow
def test_notebook_runs_and_ends_in_a_verdict(executed, name, expected):
  notebook = executed[name]
  errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"]
  assert not errors
  last = notebook.cells[-1]
  verdict = "".join(o["data"]["text/markdown"] for o in last.outputs
                    if "text/markdown" in o.get("data", {}))
  assert expected in verdict
  assert "Skipped" not in "".join(_outputs(notebook, "text/markdown"))  # every sweep was found
  assert len(_outputs(notebook, "image/png")) >= 2  # plots rendered inline
