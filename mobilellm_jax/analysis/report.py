"""A sweep's analysis as one object (verdicts, ours-vs-paper tables, figures), shown in a notebook
or written as REPORT.md with PNGs beside it.

    write_report("runs/depth_vs_width")   # -> runs/depth_vs_width/REPORT.md
The report ends each sweep kind with text sampled from its best and worst run (samples.py: fresh
from their checkpoints and saved beside them, else the samples saved earlier).
The sweep kind is the runs' `group` (else the directory name); its sweep file says which verdict
rule, tables and plots apply (study.py). A directory holding several sweeps (runs/) gets one
section per sweep. Studies without a paper counterpart get the generic parts: configs, curves,
and scaling fits where runs span sizes or budgets.
"""

import dataclasses
import os
import sys

import pandas as pd

from mobilellm_jax.analysis import (fits, paper, plots, results, samples, stats, study, tables,
                                    verdicts)


@dataclasses.dataclass
class Analysis:
  """Everything shown for one sweep kind."""
  kind: str
  runs: pd.DataFrame
  verdicts: list
  tables: list  # (caption, DataFrame)
  figures: list  # (file name, Figure)


def _rule_parts(rule: str, agg: pd.DataFrame):
  """(tables, figures, paper results) of a verdict rule (a sweep file's VERDICTS)."""
  if rule == "depth_vs_width":
    return ([("Ours: depth vs width (Δ against the shallowest at each budget)", tables.depth(agg)),
             ("Paper: depth vs width, avg zero-shot accuracy at 0.25T tokens", tables.paper_depth())],
            [("depth.png", plots.plot_depth(agg))],
            [paper.depth_result(size) for size in paper.DEPTH_VS_WIDTH])
  if rule == "ablation_ladder":
    return ([("The ablation ladder: paper (avg accuracy %) next to ours (Δ = change over the "
              "previous step)", tables.ladder(agg))],
            [("ladder.png", plots.plot_bars(tables.order_ladder(agg), "label",
                                            title="Ablation ladder", deltas=True))],
            [paper.ladder_result(size) for size in ("125M", "350M")])
  if rule == "layer_sharing":
    table = tables.sharing(agg)
    ordered = agg.loc[table.index].assign(strategy=table["strategy"])
    baseline = 0 if ordered["layer_sharing"].iloc[0] == "none" else None
    return ([("Layer-sharing strategies: paper (avg accuracy %) next to ours (Δ against no "
              "sharing)", table)],
            [("sharing.png", plots.plot_bars(ordered, "strategy", title="Layer sharing",
                                             baseline=baseline))],
            [paper.sharing_result(size) for size in paper.LAYER_SHARING])
  if rule == "repeat_count":
    return ([(f"Repeat count (Δ against 1x); paper: {paper.REPEAT_COUNT_NOTE}", tables.repeats(agg))],
            [("repeats.png", plots.plot_repeats(agg))], [])
  if rule == "embedding_sharing":
    variants = tables.with_embedding_variant(agg)
    return ([("Embedding sharing: paper (125M) next to ours (Δ against untied)",
              tables.embedding(agg))],
            [("embedding.png", plots.plot_bars(variants, "variant", title="Embedding sharing"))],
            [paper.embedding_result()])
  if rule == "heads_kv":
    table = tables.heads(agg)
    ordered = agg.loc[table.index].assign(
        heads=[f"h{h} kv{k}" for h, k in zip(table["heads"], table["kv heads"])])
    return ([(f"Query and KV heads; paper: {paper.HEADS_NOTE}", table)],
            [("heads.png", plots.plot_bars(ordered, "heads", title="Heads / KV heads"))], [])
  if rule == "depth_vs_tokens":
    return ([("Validation loss by depth and training tokens", tables.tokens(agg))],
            [("tokens.png", plots.plot_tokens(agg))], [])
  return [], [], []


def _fit_parts(rule: str, runs: pd.DataFrame):
  """Scaling fits, where some family spans >= 2x in size (L(N)) or compute (L(C))."""
  found, parts, figures = [], [], []
  for x, label in (("params", "L(N): loss against parameters"),
                   ("train_flops", "L(C): loss against compute")):
    if x not in runs:
      continue
    fitted = fits.fit_families(runs, x)
    if not (fitted["error"] == "").any():
      continue
    if rule != "depth_vs_tokens" or x != "train_flops":  # that rule already fits L(C)
      found += verdicts.scaling(fitted)
    parts.append((f"Scaling fits, {label}: L = E + A x^-alpha (95% intervals)",
                  fitted.drop(columns=["fit"])))
    figures.append((f"fit_{x}.png", plots.plot_fits(runs, fitted, x)))
  return found, parts, figures


def analyze(runs: pd.DataFrame, kind: str, curves: pd.DataFrame | None = None) -> Analysis:
  """Verdicts, tables and figures for the finished runs of one sweep kind."""
  declared = study.of(kind)
  agg = stats.aggregate_seeds(study.with_paper_steps(runs, declared))
  kind_tables, figures, paper_results = _rule_parts(declared.verdicts, agg)
  found = verdicts.for_sweep(kind, runs)
  fit_verdicts, fit_tables, fit_figures = _fit_parts(declared.verdicts, runs)
  all_tables = [("Who wins, and by how much: the paper's comparisons, then ours",
                 tables.winners(found, paper_results))] + kind_tables + fit_tables
  final = tables.final_models(runs)
  if len(final):
    all_tables.append(("Released models: per-task zero-shot accuracy, paper next to ours", final))
    all_tables.append(("The paper's baselines: avg zero-shot accuracy (%)", tables.baselines()))
  all_tables.append(("All configs (mean ± std over seeds)", tables.overview(agg)))
  figures += fit_figures
  if curves is not None and len(curves):
    figures.append(("curves.png", plots.plot_curves(curves)))
  return Analysis(kind, runs, found + fit_verdicts, all_tables, figures)


def analyze_sweep(sweep: results.Sweep) -> list[Analysis]:
  """One Analysis per sweep kind found among the finished runs."""
  out = []
  for group in sweep.groups:
    runs = sweep.group_runs(group) if len(sweep.runs) else sweep.runs
    if len(runs):
      out.append(analyze(runs, group, results.load_curves(sweep, runs)))
  return out


def show(sweep: results.Sweep, kind: str) -> Analysis | None:
  """Display one kind's verdicts, tables and figures in a notebook; a missing sweep is reported
  (with the command that makes it), not raised, so the rest of the notebook runs."""
  from IPython.display import Markdown, display  # pylint: disable=import-outside-toplevel
  try:
    runs = sweep.group_runs(kind)
  except ValueError as err:
    display(Markdown(f"**Skipped:** {err}"))
    return None
  analysis = analyze(runs, kind, results.load_curves(sweep, runs))
  display(Markdown(verdicts_markdown(analysis.verdicts)))
  for caption, frame in analysis.tables:
    if len(frame):
      display(Markdown(f"**{caption}**"), frame)
  for _, fig in analysis.figures:
    display(fig)
  return analysis


def verdicts_markdown(found) -> str:
  return "\n".join(f"- {v.text}" for v in found) or "- (no verdicts: nothing to compare)"


def summary_markdown(analyses) -> str:
  """Per sweep kind: how many findings agree with the paper, disagree, or are inconclusive; then
  the findings. None entries (sweeps that were skipped) are listed as not run."""
  lines = []
  for analysis in analyses:
    if analysis is None:
      continue
    counts = pd.Series([v.status for v in analysis.verdicts]).value_counts()
    words = {"agrees": "agree with the paper", "disagrees": "disagree",
             "inconclusive": "inconclusive"}
    tally = ", ".join(f"{counts[s]} {w}" for s, w in words.items() if counts.get(s, 0))
    lines += [f"**{analysis.kind}** ({len(analysis.runs)} runs): {tally or 'no comparisons'}",
              "", verdicts_markdown(analysis.verdicts), ""]
  skipped = sum(a is None for a in analyses)
  if skipped:
    lines.append(f"{skipped} sweep(s) not run yet: see the skipped sections above.")
  return "\n".join(lines) or "No sweep of this notebook has finished runs."


PAPER_REGIME = ("~2,000 tokens/param, embedding 13-33% of params, dim/layers 6-320 "
                "(its 125M depth grid at 0.25T tokens)")


def _shown_path(path: str) -> str:
  """The path relative to the working directory when it lies inside it (a committed results
  folder reads the same on every machine), else as given."""
  relative = os.path.relpath(path)
  return path if relative.startswith("..") else relative


def _header(sweep: results.Sweep) -> list[str]:
  from mobilellm_jax.analysis.reproduction import regime  # pylint: disable=import-outside-toplevel
  path = _shown_path(sweep.path)
  lines = [f"# Sweep `{sweep.name}`: analysis report", "",
           f"`{path}`: {len(sweep.runs)} finished runs, {len(sweep.failed)} failed, "
           f"{len(sweep.running)} in progress. "
           f"Regenerate: `python analysis/report.py --workdir {path}`.", ""]
  needed = {"tokens_seen", "params", "non_embedding_params", "dim", "num_layers"}
  if len(sweep.runs) and needed <= set(sweep.runs.columns):
    lines += [f"Regime: {regime(sweep.runs)}; the paper: {PAPER_REGIME}.", ""]
  return lines + [
          "Validation loss is in nats/token (lower is better), zero-shot accuracy in percent "
          "(higher is better), each mean ± std over seeds. A gap is *outside the seed spread* "
          "when |mean_a - mean_b| > sqrt(std_a² + std_b²). The paper's numbers are average "
          "zero-shot accuracy of 125M/350M models at 0.25T tokens.", ""]


def write_report(sweep_dir: str, with_samples: bool = True) -> str:
  """Write REPORT.md and its PNGs into the sweep directory; returns the REPORT.md path.
  with_samples: generate text from the best and worst run's checkpoints (each run's
  samples.json is rewritten); off, no samples section is written."""
  sweep = results.load_sweep(sweep_dir)
  analyses = analyze_sweep(sweep)
  lines = _header(sweep)
  if not analyses:
    lines += ["No run has finished yet: wait for the sweep, or rerun "
              f"`{results.LAUNCH_HINT.format(name=sweep.name)}`.", ""]
  for analysis in analyses:
    level = "#" if len(analyses) == 1 else "##"
    if len(analyses) > 1:
      lines += [f"## {analysis.kind}", ""]
    lines += [f"#{level} Verdicts", "", verdicts_markdown(analysis.verdicts), ""]
    for caption, frame in analysis.tables:
      if len(frame):
        lines += [f"#{level} {caption}", "", tables.markdown(frame), ""]
    if analysis.figures:
      lines += [f"#{level} Plots", ""]
    for file_name, fig in analysis.figures:
      name = f"{analysis.kind}_{file_name}"
      plots.save(fig, os.path.join(sweep.path, name))
      lines += [f"![{file_name.removesuffix('.png')}]({name})", ""]
    if with_samples:
      lines += [f"#{level} Samples: the best and the worst run (lowest and highest val loss)", ""]
      lines += samples.markdown(analysis.runs)
  if sweep.failed:
    lines += ["## Failed runs", ""] + [f"- `{n}`: {e}" for n, e in sweep.failed.items()] + [""]
  if sweep.running:
    lines += ["## In progress (no summary yet)", ""] + [f"- `{n}`" for n in sweep.running] + [""]
  path = os.path.join(sweep.path, "REPORT.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  return path


def main(argv=None) -> int:
  import argparse  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(description="Write REPORT.md (tables next to the paper's, "
                                   "verdicts, plots) for a sweep directory from experiments/launch.py.")
  parser.add_argument("--workdir", required=True,
                      help="the sweep's directory, e.g. runs/depth_vs_width (or runs/ for all)")
  parser.add_argument("--no_samples", action="store_true",
                      help="leave out the text generated by the best and worst run")
  args = parser.parse_args(argv)
  try:
    path = write_report(args.workdir, with_samples=not args.no_samples)
  except FileNotFoundError as err:
    print(f"error: {err}", file=sys.stderr)
    return 1
  print(path)
  return 0
