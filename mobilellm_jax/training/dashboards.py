"""What W&B shows of a study, so that a dashboard answers its question without a notebook.

Runs carry flat config columns a runs table can group and filter by, tokens seen as the x-axis of
every curve and the validation loss summarised as its last and its minimum (`run_columns`,
`define_metrics`). Each sweep gets one saved workspace, defined here (`build_workspace`): the
final validation loss against the study's headline axis, the loss curves against tokens and the
runs table. The launcher keeps its definition in `<sweep dir>/wandb_workspace.json` and saves it
to W&B when the sweep ran online; after an offline sweep and `wandb sync`, one command saves it:

    python -m mobilellm_jax.training.dashboards publish --sweep_dir runs/depth_vs_width
"""

import argparse
import json
import os
import re
import sys

from mobilellm_jax.model import counting

STEP_METRIC = "tokens_seen"  # the x-axis of every curve: runs of different batch sizes line up
SUMMARISED = {"val_loss": "last,min"}  # W&B keeps these as {"last": .., "min": ..} in the summary
SPEC_FILE = "wandb_workspace.json"
# Keys of what the sweep's summary run logs (mobilellm_jax/training/summary_run.py).
RESULTS_KEY, VERDICTS_KEY, PLOTS_PREFIX = "results", "verdicts", "plots/"
# A sweep's HEADLINE (a summary column) -> the flat config column that holds it.
HEADLINE_COLUMNS = {"num_layers": "layers", "share_repeats": "repeats", "label": "label"}
RUN_COLUMNS = ("study", "label", "layers", "dim", "params", "non_embedding_params",
               "effective_depth", "sharing", "repeats", "aspect_ratio", "tokens_per_param", "seed")


def run_columns(config, num_steps: int, name: str) -> dict:
  """Flat config columns of one run (W&B nests the config's sections, which tables cannot group
  by). `point` is the run's name without its seed: the seeds of one point share it."""
  m = config.model
  counts = counting.param_counts(m)
  tokens = num_steps * config.train.batch_size * config.data.seq_len
  return dict(
      study=config.tracking.group, label=config.tracking.label, preset=config.preset,
      point=re.sub(r"-s\d+$", "", name), layers=m.num_layers, dim=m.dim, heads=m.num_heads,
      kv_heads=m.num_kv_heads, ffn=m.ffn_type, tied=m.tie_embeddings, params=counts["params"],
      non_embedding_params=counts["non_embedding_params"],
      effective_depth=counting.effective_depth(m), sharing=m.layer_sharing,
      repeats=m.share_repeats if m.layer_sharing != "none" else 1,
      aspect_ratio=m.dim / m.num_layers, tokens=tokens, tokens_per_param=tokens / counts["params"],
      seed=config.train.seed)


def run_tags(config) -> list[str]:
  """The config's tags, the study (its group) and the preset, each once."""
  tags = [t for t in config.tracking.tags.split(",") if t] + [config.tracking.group, config.preset]
  return list(dict.fromkeys(t for t in tags if t))


def define_metrics(run) -> None:
  """Every curve against tokens seen; the validation loss summarised as its last and min."""
  run.define_metric(STEP_METRIC)
  run.define_metric("*", step_metric=STEP_METRIC)
  for name, summary in SUMMARISED.items():
    run.define_metric(name, step_metric=STEP_METRIC, summary=summary)


def headline_chart_key(headline: str) -> str:
  return f"val_loss_vs_{headline}"


def study_inputs(*, sweep: str, title: str, project: str, headline: str, numeric: bool,
                 presets: list[str], plots: list[str]) -> dict:
  """What build_workspace needs, as JSON: kept in the spec file, so publish rebuilds it."""
  return dict(sweep=sweep, title=title, project=project, headline=headline, numeric=numeric,
              presets=sorted(set(presets)), plots=list(plots))


def build_workspace(inputs: dict, entity: str):
  """The study's workspace (no network; `.save()` uploads it)."""
  import wandb_workspaces.reports.v2 as wr  # pylint: disable=import-outside-toplevel  (slow)
  import wandb_workspaces.workspaces as ws  # pylint: disable=import-outside-toplevel
  from wandb_workspaces import expr  # pylint: disable=import-outside-toplevel

  headline = inputs["headline"]
  column = HEADLINE_COLUMNS.get(headline, headline)
  chart = headline_chart_key(headline)
  last, best = wr.SummaryMetric("val_loss.last"), "summary:val_loss.min"
  if inputs["numeric"]:
    means = wr.CustomChart(
        query={"summaryTable": {"tableKey": f"{chart}_table"}}, chart_name="wandb/line/v0",
        chart_fields={"x": headline, "y": "val_loss_mean", "stroke": "series"},
        chart_strings={"title": f"final validation loss vs {column} (mean over seeds)"})
    per_run = wr.ScatterPlot(title=f"final validation loss vs {column}, each run",
                             x=wr.Config(column), y=last, log_x=headline == "num_layers")
  else:
    means = wr.CustomChart(
        query={"summaryTable": {"tableKey": f"{chart}_table"}}, chart_name="wandb/bar/v0",
        chart_fields={"label": headline, "value": "val_loss_mean"},
        chart_strings={"title": f"final validation loss by {column} (mean over seeds)"})
    per_run = wr.BarPlot(title=f"final validation loss by {column} (mean ± std over seeds)",
                         metrics=["val_loss"], groupby=wr.Config(column), groupby_aggfunc="mean",
                         groupby_rangefunc="stddev")

  def curve(metric: str, title: str):
    return wr.LinePlot(title=title, x=STEP_METRIC, y=[metric], groupby=wr.Config("point"),
                       groupby_aggfunc="mean", groupby_rangefunc="stddev")

  answer = ws.Section(name=f"{inputs['title']}: validation loss against {column}", is_open=True,
                      panels=[means, per_run, wr.WeavePanelSummaryTable(table_name=VERDICTS_KEY)])
  against_tokens = ws.SectionPanelSettings(x_axis=STEP_METRIC)
  curves = ws.Section(name="Loss against tokens seen (mean ± std over seeds)", is_open=True,
                      panels=[curve("loss", "training loss"), curve("val_loss", "validation loss"),
                              curve("lr", "learning rate")], panel_settings=against_tokens)
  table = ws.Section(name="Runs and plots", is_open=True, panels=[
      wr.WeavePanelSummaryTable(table_name=RESULTS_KEY, layout=wr.Layout(w=24, h=10)),
      wr.MediaBrowser(title="the sweep's plots", media_keys=list(inputs["plots"]))])
  speed = ws.Section(name="Throughput", panels=[curve("tokens_per_s", "tokens/s"),
                                                curve("mfu", "MFU")], panel_settings=against_tokens)
  columns = [f"config:{c}.value" for c in RUN_COLUMNS] + ["summary:val_loss.last", best]
  runset = ws.RunsetSettings(
      filters=expr.And(expr.Metric("Group") == inputs["sweep"],
                       expr.Config("preset").isin(inputs["presets"])),
      pinned_columns=columns, order=[expr.Ordering(expr.Config(column))])
  return ws.Workspace(entity=entity, project=inputs["project"], name=inputs["title"],
                      sections=[answer, curves, table, speed],
                      settings=ws.WorkspaceSettings(x_axis=STEP_METRIC, max_runs=100),
                      runset_settings=runset)


def spec(workspace) -> dict:
  """The workspace as the JSON W&B stores (panel ids are random per build)."""
  model = workspace._to_model()  # pylint: disable=protected-access
  return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def read(sweep_dir: str) -> dict:
  path = os.path.join(sweep_dir, SPEC_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {SPEC_FILE} in {sweep_dir}; run the sweep first "
                            "(experiments/launch.py writes it when the sweep finishes)")
  with open(path) as f:
    return json.load(f)


def write(sweep_dir: str, inputs: dict, *, entity: str = "", published: dict | None = None) -> str:
  """The spec file: the inputs, the workspace they build and where it was saved (if it was).
  A rewrite keeps the saved view, so publishing again updates it instead of adding another."""
  path = os.path.join(sweep_dir, SPEC_FILE)
  if published is None and os.path.exists(path):
    published = read(sweep_dir).get("published")
  record = dict(inputs=inputs, published=published,
                publish=("python -m mobilellm_jax.training.dashboards publish "
                         f"--sweep_dir {sweep_dir}"),
                workspace=spec(build_workspace(inputs, entity or "<entity>")))
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=1)
  os.replace(tmp, path)
  return path


def publish(sweep_dir: str, entity: str = "") -> str:
  """Saves the sweep's workspace to W&B (needs `wandb login`); returns its URL. The same view
  is updated on later calls for the same entity and project."""
  record = read(sweep_dir)
  inputs = record["inputs"]
  if not entity:
    import wandb  # pylint: disable=import-outside-toplevel
    entity = wandb.Api().default_entity
  workspace = build_workspace(inputs, entity)
  published = record.get("published") or {}
  # pylint: disable=protected-access  (wandb-workspaces keeps the saved view's name and id there)
  if published.get("entity") == entity and published.get("project") == inputs["project"]:
    workspace._internal_name, workspace._internal_id = published["view"], published["id"]
  workspace.save()
  url = workspace.url
  write(sweep_dir, inputs, entity=entity, published=dict(
      entity=entity, project=inputs["project"], view=workspace._internal_name,
      id=workspace._internal_id, url=url))
  return url


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description="Save a sweep's W&B workspace (after `wandb sync`).")
  commands = parser.add_subparsers(dest="command", required=True)
  publish_parser = commands.add_parser("publish", help="save the workspace of a sweep directory")
  publish_parser.add_argument("--sweep_dir", required=True, help="e.g. runs/depth_vs_width")
  publish_parser.add_argument("--entity", default="", help="W&B entity (default: your default)")
  args = parser.parse_args(argv)
  import wandb  # pylint: disable=import-outside-toplevel
  try:
    print(publish(args.sweep_dir, args.entity))
  except (FileNotFoundError, wandb.errors.Error) as error:  # no sweep yet; not logged in
    print(f"error: {error}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
