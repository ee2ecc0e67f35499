"""One W&B run per sweep that holds its answer, beside the training runs in the sweep's group
(job type 'analysis'): the results table, the final validation loss per seed-aggregated point
against the headline axis, the verdicts, the plots as images, and REPORT.md with results.csv as
an artifact. Its id is kept in the sweep directory, so the launcher's finish step updates this run
each time instead of adding another."""

import glob
import os
import secrets
import shutil

import pandas as pd

from mobilellm_jax.training import dashboards

ID_FILE = "wandb_summary_id"
ARTIFACT_FILES = ("REPORT.md", "results.csv", "results.md")
SERIES_COLUMNS = ("param_budget", "num_tokens", "layer_sharing", "tie_embeddings", "ffn_type")


def stable_id(sweep_dir: str) -> str:
  path = os.path.join(sweep_dir, ID_FILE)
  if not os.path.exists(path):
    with open(path, "w") as f:
      f.write(secrets.token_hex(4))
  with open(path) as f:
    return f.read().strip()


def plot_files(sweep_dir: str) -> dict:
  """The sweep's PNGs by the key the summary run logs them under."""
  return {f"{dashboards.PLOTS_PREFIX}{os.path.basename(p)[:-4]}": p
          for p in sorted(glob.glob(os.path.join(sweep_dir, "*.png")))}


def is_numeric(aggregated: pd.DataFrame, headline: str) -> bool:
  return headline != "label" and pd.api.types.is_numeric_dtype(aggregated[headline])


def headline_table(aggregated: pd.DataFrame, headline: str) -> pd.DataFrame:
  """One row per seed-aggregated point: its headline value, its series (the key columns that
  vary besides the headline, e.g. the parameter budget) and its validation loss."""
  varying = [c for c in SERIES_COLUMNS
             if c in aggregated and c != headline and aggregated[c].nunique(dropna=False) > 1]
  series = (aggregated[varying].astype(str).apply(
      lambda row: ", ".join(f"{c}={v}" for c, v in row.items()), axis=1)
            if varying else pd.Series("all runs", index=aggregated.index))
  table = pd.DataFrame({headline: aggregated[headline], "series": series,
                        "val_loss_mean": aggregated["val_loss_mean"],
                        "val_loss_std": aggregated["val_loss_std"],
                        "n_seeds": aggregated["n_seeds"], "config": aggregated["config"]})
  if headline == "share_repeats" and varying == ["layer_sharing"]:
    # 1x is no sharing: it starts every strategy's line, as in the repeat-count plot
    base = table[aggregated["layer_sharing"] == "none"]
    table = pd.concat([table[aggregated["layer_sharing"] != "none"]] + [
        base.assign(series=s) for s in sorted(set(table["series"]) - set(base["series"]))])
  return table.sort_values(["series", headline], ignore_index=True)


def _chart(wandb, aggregated: pd.DataFrame, headline: str, title: str):
  data = wandb.Table(dataframe=headline_table(aggregated, headline))
  if is_numeric(aggregated, headline):
    return wandb.plot.line(data, headline, "val_loss_mean", stroke="series", title=title)
  return wandb.plot.bar(data, headline, "val_loss_mean", title=title)


def record(sweep_dir: str, *, sweep: str, scale: str, configs: list, table: pd.DataFrame,
           aggregated: pd.DataFrame, verdicts: list, headline: str) -> dict:
  """Writes (or updates) the sweep's summary run; returns what the workspace needs to know of it
  (dashboards.study_inputs) and, online, the entity it went to."""
  import wandb  # pylint: disable=import-outside-toplevel  (slow import)
  first = configs[0]
  mode, project = first.tracking.wandb_mode, first.tracking.project
  title = os.path.basename(os.path.normpath(sweep_dir))
  presets = sorted({c.preset for c in configs})
  run_id = stable_id(sweep_dir)
  run = wandb.init(project=project, id=run_id, resume="allow", group=sweep, job_type="analysis",
                   name=f"{title} summary", tags=[sweep, *presets, "summary"], mode=mode,
                   dir=sweep_dir, config=dict(study=sweep, scale=scale, preset=presets[0],
                                              headline=headline, runs=len(table)))
  plots = plot_files(sweep_dir)
  verdict_rows = [[v.status, v.setting, v.winner, v.reference, v.margin, v.text] for v in verdicts]
  run.log({
      dashboards.RESULTS_KEY: wandb.Table(dataframe=table),
      dashboards.VERDICTS_KEY: wandb.Table(
          columns=["status", "setting", "winner", "reference", "margin", "verdict"],
          data=verdict_rows),
      dashboards.headline_chart_key(headline): _chart(
          wandb, aggregated, headline, f"{title}: final validation loss vs {headline}"),
      **{key: wandb.Image(path, caption=os.path.basename(path)) for key, path in plots.items()}})
  run.summary["verdicts_text"] = "\n".join(f"- {v.text}" for v in verdicts)
  for status in ("agrees", "disagrees", "inconclusive"):
    run.summary[f"verdicts_{status}"] = sum(v.status == status for v in verdicts)
  artifact = wandb.Artifact(f"{title}-report", type="analysis",
                            description=f"REPORT.md and results of the {sweep} sweep ({scale})")
  for name in ARTIFACT_FILES:
    if os.path.exists(os.path.join(sweep_dir, name)):
      artifact.add_file(os.path.join(sweep_dir, name))
  for path in plots.values():
    artifact.add_file(path)
  run.log_artifact(artifact)
  entity = run.entity if mode == "online" else ""
  this_run = os.path.abspath(os.path.dirname(run.dir))
  run.finish()
  # an older local copy of this run is superseded: the newest holds everything it did
  for older in glob.glob(os.path.join(sweep_dir, "wandb", f"offline-run-*-{run_id}")):
    if os.path.abspath(older) != this_run:
      shutil.rmtree(older, ignore_errors=True)
  inputs = dashboards.study_inputs(sweep=sweep, title=title, project=project, headline=headline,
                                   numeric=is_numeric(aggregated, headline), presets=presets,
                                   plots=list(plots))
  return dict(inputs=inputs, entity=entity, mode=mode)
