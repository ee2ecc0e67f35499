"""REPRODUCTION.md: one row per finding of the paper, from the shipped cpu-scale results.

Every row is computed from `results/<sweep>/` (the launcher's summaries) by the same verdict rules
as the sweep reports (verdicts.py): a finding the runs support outside the seed spread is
"reproduced", one they contradict outside it "not reproduced", anything else "inconclusive at this
scale". A study without results says so and gives the command that produces them.
"""

import glob
import json
import math
import os

import pandas as pd

from mobilellm_jax.analysis import paper, results, tables, verdicts

VERDICT_WORDS = {"agrees": "reproduced", "disagrees": "not reproduced",
                 "inconclusive": "inconclusive at this scale"}


def _paper_statements() -> dict[str, str]:
  """What the paper reports for each study, written from paper.py's numbers."""
  d2w = "; ".join(f"{size}: " + ", ".join(f"{layers}L {acc}" for layers, _, acc in grid)
                  for size, grid in paper.DEPTH_VS_WIDTH.items())
  ladder = " -> ".join(f"{step.name} {step.acc_125m}" for step in paper.ABLATION_LADDER)
  embedding = "; ".join(f"{text} {params / 1e6:.0f}M {acc}"
                        for _, text, params, acc in paper.EMBEDDING_SHARING)
  sharing = "; ".join(f"{size}: " + ", ".join(f"{k} {v}" for k, v in values.items())
                      for size, values in paper.LAYER_SHARING.items())
  return {
      "depth_vs_width": f"deeper beats wider at fixed size (avg zero-shot, 0.25T tokens) {d2w}",
      "ablation_ladder": f"125M: {ladder}",
      "embedding_sharing": f"125M: {embedding}",
      "heads_kv": paper.HEADS_NOTE,
      "layer_sharing": f"2 repeats: {sharing}",
      "repeat_count": paper.REPEAT_COUNT_NOTE,
      "depth_vs_tokens": "not studied in the paper (it trains ~2,000 tokens per parameter)",
      "recipe_fairness": "one learning rate (2e-3) and one initialisation for every shape",
  }


# The studies in the order the paper makes its case; (sweep, what it asks).
STUDIES = (
    ("depth_vs_width", "Depth vs width at a fixed parameter count"),
    ("ablation_ladder", "The ablation ladder, step by step (SwiGLU, deep and thin, embedding "
                        "sharing, GQA, immediate layer sharing)"),
    ("embedding_sharing", "Embedding sharing, and re-investing the saved parameters in depth"),
    ("heads_kv", "Grouped-query attention: fewer KV heads at a fixed size"),
    ("layer_sharing", "Layer-sharing strategies (immediate, repeat-all, reverse) vs none"),
    ("repeat_count", "Repeat counts of immediate sharing (1x-4x)"),
    ("depth_vs_tokens", "Beyond the paper: the best depth as tokens per parameter grow"),
    ("recipe_fairness", "Beyond the paper: is one recipe fair to every depth?"),
)


def provenance(sweep_dir: str) -> dict:
  """Seeds, runs, commits and total wall time of a sweep's finished runs."""
  seeds, commits, wall, count = set(), set(), 0.0, 0
  for path in glob.glob(os.path.join(sweep_dir, "*", "summary.json")):
    with open(path) as f:
      summary = json.load(f)
    count += 1
    seeds.add(summary.get("seed"))
    commits.add(str(summary.get("versions", {}).get("commit", "unknown"))[:7])
    wall += float(summary.get("wall_seconds") or 0.0)
  return dict(runs=count, seeds=sorted(s for s in seeds if s is not None),
              commits=sorted(commits), wall_minutes=wall / 60)


def missing_runs(results_dir: str, sweep: str) -> tuple[list[str], int]:
  """The sweep file's cpu runs that have no summary in results_dir/<sweep>, and how many it plans."""
  from mobilellm_jax.runner import sweeps  # pylint: disable=import-outside-toplevel
  names = [sweeps.run_name(config) for config in sweeps.expand(sweep, "cpu")]
  done = {os.path.basename(os.path.dirname(path))
          for path in glob.glob(os.path.join(results_dir, sweep, "*", "summary.json"))}
  return [name for name in names if name not in done], len(names)


def regime(runs: pd.DataFrame) -> str:
  """Tokens per parameter, embedding share and aspect ratio (dim / layers) of a sweep's runs."""
  tokens_per_param = runs["tokens_seen"] / runs["params"]
  embedding = 1 - runs["non_embedding_params"] / runs["params"]
  aspect = runs["dim"] / runs["num_layers"]

  def span(values, fmt):
    low, high = format(values.min(), fmt), format(values.max(), fmt)
    return low if low == high else f"{low}-{high}"

  return (f"{span(tokens_per_param, '.2g')} tokens/param, embedding {span(100 * embedding, '.0f')}% "
          f"of params, dim/layers {span(aspect, '.0f')}")


def study_section(results_dir: str, sweep: str, question: str, statement: str) -> list[str]:
  command = f"python experiments/launch.py --sweep {sweep} --workdir {results_dir}"
  sweep_dir = os.path.join(results_dir, sweep)
  lines = [f"### {question}", "", f"Paper: {statement}.", ""]
  loaded = results.load_sweep(sweep_dir) if os.path.isdir(sweep_dir) else None
  if loaded is None or loaded.runs.empty:
    return lines + [f"Not run yet at cpu scale. Command: `{command}`", ""]
  runs = loaded.runs
  where = provenance(sweep_dir)
  found = verdicts.for_sweep(sweep, runs)
  missing, planned = missing_runs(results_dir, sweep)
  coverage = ("every planned run" if not missing else
              f"{planned - len(missing)} of {planned} planned runs; not yet run: {', '.join(missing)}")
  lines += [f"Ours: {where['runs']} runs ({coverage}), seeds {', '.join(map(str, where['seeds']))}; "
            f"{regime(runs)}. Command: `{command}` "
            f"(its runs' wall times sum to {where['wall_minutes']:.0f} min on 2 CPU cores; trained at "
            f"{', '.join(where['commits'])}).", ""]
  if loaded.running or loaded.failed:
    lines += [f"Unfinished: {len(loaded.running)} in progress, {len(loaded.failed)} failed; the "
              "verdicts below cover the finished runs only.", ""]
  lines += ["| finding (ours: validation loss, mean ± std over seeds) | verdict |", "|---|---|"]
  for verdict in found:
    words = VERDICT_WORDS.get(verdict.status, "no paper counterpart")
    text = verdict.text.rsplit(" [", 1)[0] if verdict.text.endswith("]") else verdict.text
    lines.append(f"| {text.replace('|', '/')} | {words} |")
  return lines + [""]


def zeroshot_section(results_dir: str) -> list[str]:
  """Each run scored on the eight tasks (its eval.json from experiments/evaluate.py): accuracy
  per task against chance beside its validation loss and bits per byte, and the average's margin
  over chance against the evaluation's standard error (binomial, at p = 0.5)."""
  rows = []
  for path in sorted(glob.glob(os.path.join(results_dir, "*", "*", "eval.json"))):
    with open(path) as f:
      evaluation = json.load(f)
    scored = evaluation.get("zeroshot", {})
    tasks = scored.get("tasks", {})
    if set(tasks) != set(paper.TASKS):
      continue  # not the full eight tasks
    run_dir = os.path.dirname(path)
    counts = [tasks[t]["num_questions"] for t in paper.TASKS]
    se = 100 * math.sqrt(sum(0.25 / n for n in counts)) / len(counts)
    margin = 100 * (scored["avg_acc"] - scored["avg_chance"])
    row = {"study": os.path.basename(os.path.dirname(run_dir)), "run": os.path.basename(run_dir),
           "val loss": f"{evaluation['validation']['loss']:.3f}",
           "bits/byte": f"{evaluation['validation']['bits_per_byte']:.3f}"}
    row.update({t: f"{100 * tasks[t]['acc']:.1f} ({100 * tasks[t]['chance']:.0f})"
                for t in paper.TASKS})
    row["avg (chance)"] = f"{100 * scored['avg_acc']:.1f} ({100 * scored['avg_chance']:.1f})"
    where = ("above chance" if margin > 2 * se else "below chance" if margin < -2 * se
             else "at chance")
    row["avg - chance"] = f"{margin:+.1f} ± {se:.1f}: {where}"
    rows.append(row)
  lines = ["## Zero-shot on the eight tasks", ""]
  if not rows:
    return lines + ["No run has been scored yet: `python experiments/evaluate.py --workdir "
                    f"{results_dir}/<sweep>/<run>` scores one.", ""]
  paper_avg = paper.FINAL_MODELS["125M"]["avg"]
  return lines + [
      "The best model of each study, scored once on the full eight tasks by `python "
      f"experiments/evaluate.py --workdir {results_dir}/<sweep>/<run>` (about 4 min a model on 2 "
      "CPU cores). Accuracy in %, chance in brackets; the last column is the average's margin "
      "over chance and the evaluation's standard error, 'at chance' within 2 of them ('below "
      "chance' is a bias of the answer scoring, e.g. towards one BoolQ answer, not knowledge). "
      "The paper's MobileLLM-125M averages "
      f"{paper_avg:.1f} after 1T tokens; these models saw 1M (see 'Metric' above).", "",
      tables.markdown(pd.DataFrame(rows)), ""]


def reproduction_markdown(results_dir: str = "results") -> str:
  statements = _paper_statements()
  lines = ["## The studies", "",
           "Generated by `python analysis/reproduction.py` from the shipped results in "
           f"`{results_dir}/`; every number below comes from a run whose config, metrics and "
           "summary are committed there.", ""]
  for sweep, question in STUDIES:
    lines += study_section(results_dir, sweep, question, statements[sweep])
  lines += zeroshot_section(results_dir)
  return "\n".join(lines)


BEGIN, END = "<!-- generated: begin -->", "<!-- generated: end -->"


def write_reproduction(results_dir: str = "results", path: str = "REPRODUCTION.md") -> str:
  """Writes the generated part between the BEGIN and END markers of `path`, keeping the prose
  around it; a file without the markers gets them appended."""
  generated = f"{BEGIN}\n{reproduction_markdown(results_dir)}\n{END}"
  text = open(path).read() if os.path.exists(path) else ""
  if BEGIN in text and END in text:
    text = text[:text.index(BEGIN)] + generated + text[text.index(END) + len(END):]
  else:
    text = (text.rstrip() + "\n\n" if text.strip() else "") + generated + "\n"
  with open(path, "w") as f:
    f.write(text)
  return path
