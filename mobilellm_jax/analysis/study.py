"""What a sweep file declares about reading its results: the headline column, the plot, the
verdict rule, and (for the ablation ladder) which step of the paper each run's label is.

    # sweeps/depth_vs_width.py
    HEADLINE = "num_layers"      # the summary column the loss is plotted and tabled against
    PLOT = "depth"               # plots.plot_headline: PLOTS below (depth, repeats, tokens, bars)
    VERDICTS = "depth_vs_width"  # verdicts.RULES: the comparison and the paper's numbers
    PAPER_STEPS = {...}          # label -> paper.ABLATION_LADDER key (ladder studies only)

A study with no sweep file here (runs made elsewhere) is read with the generic parts: a bar plot
by label and the generic verdicts.
"""

import dataclasses

from mobilellm_jax.configs import ConfigError
from mobilellm_jax.runner import sweeps


PLOTS = ("depth", "repeats", "tokens", "bars")  # plots.plot_headline
RULES = ("depth_vs_width", "ablation_ladder", "layer_sharing", "repeat_count", "embedding_sharing",
         "heads_kv", "depth_vs_tokens", "recipe_fairness", "generic")  # verdicts.RULES


@dataclasses.dataclass(frozen=True)
class Study:
  kind: str
  headline: str = "label"
  plot: str = "bars"
  verdicts: str = "generic"
  paper_steps: dict = dataclasses.field(default_factory=dict)


def kind_of(name: str) -> str:
  """The sweep a results directory or run group is named after: the launcher names a non-default
  scale's directory '<sweep>-<scale>' ('depth_vs_width-smoke' -> 'depth_vs_width')."""
  base, _, scale = name.rpartition("-")
  return base if base and scale in sweeps.SCALES else name


def of(name: str) -> Study:
  """The Study that sweeps/<kind>.py declares for `name` (a sweep, directory or group name); a
  PLOT or VERDICTS the analysis does not know raises ConfigError naming the sweep file."""
  kind = kind_of(name)
  try:
    module = sweeps.load_sweep(kind)
  except ConfigError:  # no such sweep file here
    return Study(kind)
  declared = Study(kind, headline=getattr(module, "HEADLINE", "label"),
                   plot=getattr(module, "PLOT", "bars"),
                   verdicts=getattr(module, "VERDICTS", "generic"),
                   paper_steps=dict(getattr(module, "PAPER_STEPS", {})))
  for field, value, known in (("PLOT", declared.plot, PLOTS),
                              ("VERDICTS", declared.verdicts, RULES)):
    if value not in known:
      raise ConfigError(f"sweeps/{kind}.py: {field} = {value!r}; known: {', '.join(known)}")
  return declared


def with_paper_steps(runs, study: Study):
  """`runs` with a 'paper_step' column from the study's PAPER_STEPS (None where a label has
  none); unchanged when the study declares none."""
  if not study.paper_steps or "label" not in runs:
    return runs
  return runs.assign(paper_step=[study.paper_steps.get(str(label)) for label in runs["label"]])
