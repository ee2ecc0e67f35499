"""Execute the analysis notebooks in place on the committed results, so they read on GitHub with
their tables and plots (run it after a study's results land in results/).

    python analysis/run_notebooks.py [--results results] [name ...]
"""

import argparse
import os
import sys

import nbformat
from nbclient import NotebookClient

ANALYSIS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(ANALYSIS)
NOTEBOOKS = ("depth_vs_width", "ablations", "layer_sharing", "scaling_fits")


def execute(name: str, results: str) -> None:
  """Runs analysis/<name>.ipynb top to bottom on `results` and writes it back with its outputs."""
  path = os.path.join(ANALYSIS, f"{name}.ipynb")
  notebook = nbformat.read(path, as_version=4)
  results_dir = os.path.join(results, "depth_vs_width") if name == "depth_vs_width" else results
  # Relative to the repository root, as the notebooks resolve it, so the stored outputs name it so.
  env = dict(os.environ, MOBILELLM_RESULTS_DIR=os.path.relpath(results_dir, REPO))
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": ANALYSIS}}).execute(env=env)
  nbformat.write(notebook, path)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results", default=os.path.join(REPO, "results"))
  parser.add_argument("names", nargs="*", default=NOTEBOOKS, help=f"of {', '.join(NOTEBOOKS)}")
  args = parser.parse_args(argv)
  for name in args.names:
    if name not in NOTEBOOKS:
      print(f"error: no notebook {name!r}; the notebooks are {', '.join(NOTEBOOKS)}",
            file=sys.stderr)
      return 2
    execute(name, os.path.abspath(args.results))
    print(f"executed analysis/{name}.ipynb on {args.results}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
