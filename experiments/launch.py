"""Run a sweep: the command users know the project by.

    python experiments/launch.py --sweep depth_vs_width                 # cpu scale, ~25 min
    python experiments/launch.py --sweep layer_sharing --scale paper --dry_run
    python experiments/launch.py --sweep layer_sharing --scale paper --dry_run --target tpu:v5e:4x4
    python experiments/launch.py --sweep depth_vs_width --scale paper --shard 3/16 --backend slurm

Finished runs (with a summary.json) are skipped, so re-launching finishes a sweep. The exit status
is the number of runs that failed (their errors are in <run>/error.txt).
"""

import argparse
import sys

import jax

from mobilellm_jax.accelerators import chips
from mobilellm_jax.runner import launch, sweeps
from mobilellm_jax.training import runtime
from mobilellm_jax.configs import ConfigError
from mobilellm_jax.data import DataError


def _known_sweeps() -> str:
  try:
    return ", ".join(sweeps.list_sweeps())
  except ConfigError as error:  # reported again, as one line, when the sweep is loaded
    return str(error)


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sweep", required=True, help=f"one of: {_known_sweeps()}")
  parser.add_argument("--scale", default="cpu", help="smoke | cpu | paper (default cpu)")
  parser.add_argument("--seeds", default="", help="comma-separated seeds, replacing the sweep's")
  parser.add_argument("--workdir", default="runs", help="parent of the sweep's directory")
  parser.add_argument("--dry_run", action="store_true", help="print the plan; train nothing")
  parser.add_argument("--target", default="", help="with --dry_run: compile each run's train step "
                      "for this hardware (e.g. tpu:v5e:4x4; experiments/compile.py) and show its "
                      "fit per chip")
  parser.add_argument("--only", default="", help="only runs whose name matches (substring or glob)")
  parser.add_argument("--shard", default="", help="i/n: this worker's slice of the runs")
  parser.add_argument("--backend", default="local", choices=("local", "slurm"))
  parser.add_argument("--data_dir", default="", help="data directory for every run")
  parser.add_argument("--restart", action="store_true",
                      help="start unfinished runs over from step 0 (their old files are moved to "
                           "<run>/previous-<time>/), e.g. when none of their checkpoints restores")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  runtime.prepare_process()
  try:
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
  except ValueError:
    print(f"error: --seeds must be comma-separated integers, got {args.seeds!r}", file=sys.stderr)
    return 2
  try:
    plan = launch.make_plan(args.sweep, args.scale, workdir=args.workdir, seeds=seeds,
                            only=args.only, shard=args.shard, data_dir=args.data_dir)
    module = sweeps.load_sweep(args.sweep)
    if args.target and not args.dry_run:
      print("error: --target goes with --dry_run (it compiles, it does not train)", file=sys.stderr)
      return 2
    if args.dry_run:
      target = None
      if args.target:
        if args.target != "local":  # compile-only: no accelerator needed in this process
          jax.config.update("jax_platforms", "cpu")
        target = chips.parse(args.target)
      print(launch.format_dry_run(plan, module, target))
      return 0
    if not plan.runs:
      print(f"error: no runs of {args.sweep} match --only {args.only!r} / --shard {args.shard!r}",
            file=sys.stderr)
      return 2
    statuses = launch.execute(plan, backend=args.backend, restart=args.restart)
  except (ConfigError, DataError, chips.TargetError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  launch.finish(plan)
  failed = [s for s in statuses if s["status"] == "failed"]
  for status in failed:
    print(f"FAILED {status['name']}: {status['error']}", file=sys.stderr)
  return min(len(failed), 255)


if __name__ == "__main__":
  sys.exit(main())
