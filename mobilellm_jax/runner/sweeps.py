"""Sweeps: `sweeps/<name>.py` files, each with `get_runs(scale) -> list[ConfigDict]`, expanded
into validated, named run configs; plus the scale settings and shape helpers the files share.

A sweep file may also define DESCRIPTION (one line), NOTE (printed by --dry_run, e.g. expected
time) and how its results are read (analysis/study.py): HEADLINE (the summary column to plot the
validation loss against, default 'label'), PLOT, VERDICTS and, for a ladder, PAPER_STEPS.
"""

import fnmatch
import importlib.util
import json
import os

import ml_collections

from mobilellm_jax.configs import ConfigError, get_config, validate
from mobilellm_jax.model.counting import ShapeRules, solve_width
from mobilellm_jax.training.tracking import run_name

# The checkout's sweeps/ when the package runs from one (an editable install); None when the
# package is installed on its own, where sweeps_dir() looks in the working directory.
SWEEPS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "sweeps")
SCALES = ("smoke", "cpu", "paper")


def sweeps_dir() -> str:
  """$MOBILELLM_SWEEPS_DIR, else the checkout's sweeps/ next to the package, else ./sweeps (a
  non-editable install run from the repository root)."""
  for candidate in (os.environ.get("MOBILELLM_SWEEPS_DIR"), SWEEPS_DIR, "sweeps"):
    if candidate and os.path.isdir(candidate):
      return os.path.abspath(candidate)
  raise ConfigError("no sweeps/ folder: run from the repository root, or set MOBILELLM_SWEEPS_DIR "
                    "to the folder holding the sweep files")


def list_sweeps() -> list[str]:
  return sorted(f[:-3] for f in os.listdir(sweeps_dir())
                if f.endswith(".py") and not f.startswith("_"))


def load_sweep(name: str):
  """The sweep's module; unknown names list the known ones."""
  known = list_sweeps()
  if name not in known:
    raise ConfigError(f"unknown sweep {name!r}; known sweeps: {', '.join(known)}")
  spec = importlib.util.spec_from_file_location(f"sweeps.{name}",
                                                os.path.join(sweeps_dir(), f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def parse_shard(text: str) -> tuple[int, int]:
  """'i/n' -> (i, n) with 0 <= i < n."""
  try:
    index, count = (int(part) for part in text.split("/"))
  except ValueError:
    raise ConfigError(f"--shard must look like i/n (e.g. 3/16), got {text!r}") from None
  if not 0 <= index < count:
    raise ConfigError(f"--shard i/n needs 0 <= i < n, got {text!r}")
  return index, count


def distinct_points(configs):
  """The configs with those that differ only in their seed kept once (the first of them): what
  `--seeds` replaces the seeds of, so a sweep file that lists its own seeds takes others too."""
  seen, points = set(), []
  for config in configs:
    point = config.to_dict()
    point["train"] = {k: v for k, v in point["train"].items() if k != "seed"}
    key = json.dumps(point, sort_keys=True, default=str)
    if key not in seen:
      seen.add(key)
      points.append(config)
  return points


def expand(name: str, scale: str, *, seeds=None, only: str = "", shard: str = "",
           data_dir: str = "") -> list[ml_collections.ConfigDict]:
  """The sweep's runs at this scale: seeds applied, named, grouped, filtered, sharded, validated."""
  if scale not in SCALES:
    raise ConfigError(f"unknown scale {scale!r}; known scales: {', '.join(SCALES)}")
  module = load_sweep(name)
  bases = module.get_runs(scale)
  if seeds is not None:
    bases = distinct_points(bases)
  runs = []
  for base in bases:
    for seed in (seeds if seeds is not None else [base.train.seed]):
      config = ml_collections.ConfigDict(base.to_dict())
      config.train.seed = seed
      config.tracking.group = name
      if config.tracking.run_name and seed != 0:
        # A name the sweep file chose says its point, not its seed: seeds other than 0 get a
        # suffix (the analysis groups '<name>' and '<name>-s1' as one point).
        config.tracking.run_name = f"{base.tracking.run_name}-s{seed}"
      if data_dir:
        config.data.data_dir = data_dir
      runs.append(config)
  for config in runs:
    try:
      validate(config)
    except ConfigError as error:
      raise ConfigError(f"sweep {name!r} ({scale}) run {run_name(config)}: {error}") from None
  names = [run_name(c) for c in runs]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ConfigError(f"sweep {name!r} ({scale}) gives several runs the same name: {duplicates}; "
                      "set tracking.run_name or vary the shape")
  if only:
    pattern = only if any(ch in only for ch in "*?[") else f"*{only}*"
    runs = [c for c in runs if fnmatch.fnmatch(run_name(c), pattern)]
  if shard:
    index, count = parse_shard(shard)
    runs = runs[index::count]
  return runs


# --- what the sweep files share --------------------------------------------------------------

# The seeds of a cpu study whose verdicts compare configs: enough to judge a gap against the
# seed spread.
THREE_SEEDS = (0, 1, 2)


def with_seeds(configs, seeds) -> list[ml_collections.ConfigDict]:
  """Each config once per seed, in order: how a sweep file declares the seeds a study needs
  (`--seeds` replaces them)."""
  runs = []
  for config in configs:
    for seed in seeds:
      run = ml_collections.ConfigDict(config.to_dict())
      run.train.seed = seed
      runs.append(run)
  return runs


def base_config(scale: str) -> ml_collections.ConfigDict:
  """The training setup of a scale; sweeps change the model (and the budget where they study it).

  smoke: seconds per run. cpu: the embedded corpus, vocab 4096, seq 256, 16 sequences a step,
  the cpu preset's recipe (depth-aware init, peak LR 6e-3, warmup 25 steps).
  paper: the paper's recipe (vocab 32000, seq 2048, 1024 sequences a step, peak LR 2e-3,
  warmup 1000, 120k steps = 0.25T tokens, bf16), for GPU/TPU meshes.
  """
  if scale == "smoke":
    config = get_config("smoke")
    config.train.update(num_steps=6, log_every=2, checkpoint_every=0, eval_batches=1)
  elif scale == "cpu":
    config = get_config("cpu")  # the preset's recipe: depth-aware init, LR 6e-3, warmup 25
    config.train.update(batch_size=16, num_tokens=1_000_000, log_every=20, eval_every=0,
                        checkpoint_every=100)
  elif scale == "paper":
    config = get_config("mobilellm_125m")
    config.train.update(batch_size=1024, num_steps=120_000, num_tokens=0, log_every=100,
                        eval_every=2000, eval_batches=20, checkpoint_every=2000)
    config.optim.update(peak_lr=2e-3, warmup_steps=1000)
  else:
    raise ConfigError(f"unknown scale {scale!r}; known scales: {', '.join(SCALES)}")
  config.tracking.label = ""
  return config


# Shape rules per scale. cpu: head_dim 32, multi-head, FFN ~8/3 dim moved by up to 25% to land
# within 2% of the budget (small widths are a coarse grid). paper: the released models' rules.
SHAPE_RULES = {
    "smoke": (ShapeRules(vocab_size=512, head_dim=16, heads_per_kv=1, ffn_multiple=8), 0.25),
    "cpu": (ShapeRules(vocab_size=4096, head_dim=32, heads_per_kv=1, ffn_multiple=8), 0.25),
    "paper": (ShapeRules(vocab_size=32000, head_dim=64, heads_per_kv=1, ffn_multiple=256), 0.0),
}


def matched_model(config, scale: str, budget: int, num_layers: int, **rule_overrides):
  """Sets config.model to the width solver's shape for `budget` at `num_layers` (in place)."""
  rules, tolerance = SHAPE_RULES[scale]
  if rule_overrides:
    rules = ShapeRules(**{**rules.__dict__, **rule_overrides})
  solution = solve_width(budget, num_layers, rules, ffn_tolerance=tolerance)
  config.model.update(solution.shape)
  config.tracking.param_budget = budget
  return config
