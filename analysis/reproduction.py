"""Regenerate the study sections of REPRODUCTION.md from the shipped results.

    python analysis/reproduction.py [--results results] [--out REPRODUCTION.md]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mobilellm_jax.analysis.reproduction import write_reproduction  # pylint: disable=wrong-import-position


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results", default="results", help="directory holding <sweep>/ folders")
  parser.add_argument("--out", default="REPRODUCTION.md")
  args = parser.parse_args(argv)
  print(write_reproduction(args.results, args.out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
