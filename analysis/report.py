"""Write REPORT.md (tables next to the paper's, verdicts, plots) for one sweep directory.

    python analysis/report.py --workdir runs/depth_vs_width
"""

import sys

from mobilellm_jax.analysis.report import main

if __name__ == "__main__":
  sys.exit(main())
