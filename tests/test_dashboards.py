"""W&B dashboards, read back from offline run files: a smoke sweep's training runs (x-axis,
summaries, flat config) and its summary run (table, plots, verdicts, report), the finish step
updating that run, and the workspaces built and published without the network."""

import glob
import hashlib
import json
import os
import socket

import pytest

from experiments import launch as launch_cli
from mobilellm_jax.runner import launch, sweeps
from mobilellm_jax.training import dashboards, summary_run, tracking, wandb_offline
from mobilellm_jax.configs import get_config
from mobilellm_jax.data.testing import build_tiny_corpus

SWEEP = "depth_vs_width"


def _sha256(path) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _read_json(path):
  with open(path) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
  """One offline smoke sweep (W&B set to offline explicitly) shared by the tests below."""
  data_dir = tmp_path_factory.mktemp("data")
  build_tiny_corpus(data_dir)
  workdir = tmp_path_factory.mktemp("runs")
  real_base_config = sweeps.base_config

  def offline_base_config(scale):
    config = real_base_config(scale)
    config.tracking.wandb_mode = "offline"
    return config

  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("WANDB_MODE", "offline")
    patch.setattr(sweeps, "base_config", offline_base_config)
    assert launch_cli.main(["--sweep", SWEEP, "--scale", "smoke", "--workdir", str(workdir),
                            "--data_dir", str(data_dir)]) == 0
  return str(workdir / f"{SWEEP}-smoke")


@pytest.fixture
def no_network(monkeypatch):
  def refuse(*args, **kwargs):
    raise OSError("this test must not use the network")
  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)


def test_tracker_gives_eval_rows_their_tokens_and_keeps_last_and_min(tmp_path):
  config = get_config("smoke")
  config.tracking.update(wandb_mode="offline", group="study", tags="mine")
  tracker = tracking.Tracker(config, str(tmp_path), total_steps=4, start_step=0, active=True)
  tracker.log(2, {"loss": 3.0, "tokens_seen": 512})
  tracker.log(3, {"val_loss": 2.0})  # an eval between logged steps
  tracker.log(4, {"loss": 2.5, "tokens_seen": 1024, "val_loss": 2.4})
  tracker.finish({"val_loss": 2.4, "params": 10, "device": {"fp16_mb": 1.0}})
  run = wandb_offline.read_run(str(tmp_path / "wandb"))
  assert run.finished
  tokens_per_step = config.train.batch_size * config.data.seq_len
  assert [(r["_step"], r["tokens_seen"]) for r in run.history] == [
      (2, 512), (3, 3 * tokens_per_step), (4, 1024)]
  assert run.summary["val_loss"] == {"last": 2.4, "min": 2.0} and run.summary["params"] == 10
  assert "device" not in run.summary and run.tags == ["mine", "study", "smoke"]
  assert run.config["tokens"] == 4 * tokens_per_step and run.config["study"] == "study"


def _run_dirs(sweep_dir):
  return sorted(os.path.dirname(p) for p in glob.glob(os.path.join(sweep_dir, "*", "summary.json")))


@pytest.mark.slow
def test_training_runs_plot_against_tokens_with_last_and_min_and_flat_config(sweep_dir):
  run_dirs = _run_dirs(sweep_dir)
  assert len(run_dirs) == 3
  for run_dir in run_dirs:
    summary = _read_json(os.path.join(run_dir, "summary.json"))
    config = _read_json(os.path.join(run_dir, "config.json"))
    run = wandb_offline.read_run(os.path.join(run_dir, "wandb"))
    assert run.finished and (run.job_type, run.group) == ("train", SWEEP) and SWEEP in run.tags
    # tokens seen is the x-axis of every curve; the validation loss keeps its last and its min
    assert {"glob_name": "*", "step_metric": "tokens_seen"}.items() <= {
        k: v for m in run.metrics if m["glob_name"] == "*" for k, v in m.items()}.items()
    (val,) = [m for m in run.metrics if m["name"] == "val_loss"]
    assert val["step_metric"] == "tokens_seen" and val["summary"] == ["last", "min"]
    tokens_per_step = config["train"]["batch_size"] * config["data"]["seq_len"]
    rows = [r for r in run.history if "loss" in r or "val_loss" in r]
    assert rows and all(r["tokens_seen"] == r["_step"] * tokens_per_step for r in rows)
    val_losses = [r["val_loss"] for r in run.history if "val_loss" in r]
    assert run.summary["val_loss"]["last"] == pytest.approx(summary["val_loss"])
    assert run.summary["val_loss"]["min"] == pytest.approx(min(val_losses))
    # flat columns a runs table can group and filter by
    c = run.config
    assert (c["study"], c["layers"], c["dim"], c["seed"]) == (
        SWEEP, summary["num_layers"], summary["dim"], summary["seed"])
    assert (c["params"], c["non_embedding_params"], c["effective_depth"]) == (
        summary["params"], summary["non_embedding_params"], summary["effective_depth"])
    assert (c["sharing"], c["repeats"]) == ("none", 1)
    assert c["aspect_ratio"] == pytest.approx(summary["dim"] / summary["num_layers"])
    assert c["tokens_per_param"] == pytest.approx(summary["tokens_seen"] / summary["params"])
    assert c["point"] == summary["name"].removesuffix("-s0") and c["label"] == summary["label"]
    assert c["model"]["num_layers"] == summary["num_layers"]  # the nested config is kept too


@pytest.mark.slow
def test_summary_run_holds_the_table_the_plots_the_verdicts_and_the_report(sweep_dir):
  run = wandb_offline.read_run(os.path.join(sweep_dir, "wandb"))
  assert run.finished and (run.job_type, run.group) == ("analysis", SWEEP)
  with open(os.path.join(sweep_dir, summary_run.ID_FILE)) as f:
    assert run.run_id == f.read().strip()
  names = sorted(os.path.basename(d) for d in _run_dirs(sweep_dir))
  results = _read_json(run.file(run.summary[dashboards.RESULTS_KEY]["path"]))
  assert len(results["data"]) == len(names) == 3  # one row per run
  assert sorted(row[results["columns"].index("run")] for row in results["data"]) == names
  # the images are the sweep's plots, byte for byte
  pngs = {f"plots/{os.path.basename(p)[:-4]}": _sha256(p)
          for p in glob.glob(os.path.join(sweep_dir, "*.png"))}
  assert f"plots/{SWEEP}" in pngs and len(pngs) >= 2
  images = {k: v for k, v in run.summary.items() if k.startswith(dashboards.PLOTS_PREFIX)}
  assert {k: v["_type"] for k, v in images.items()} == {k: "image-file" for k in pngs}
  assert {k: _sha256(run.file(v["path"])) for k, v in images.items()} == pngs
  # the verdicts, and the seed-aggregated headline points the workspace's chart draws
  verdicts = _read_json(run.file(run.summary[dashboards.VERDICTS_KEY]["path"]))
  assert verdicts["data"]
  assert all(row[-1] in run.summary["verdicts_text"] for row in verdicts["data"])
  with open(os.path.join(sweep_dir, "REPORT.md")) as f:
    assert verdicts["data"][0][-1] in f.read()
  chart_key = f"{dashboards.headline_chart_key('num_layers')}_table"
  points = _read_json(run.file(run.summary[chart_key]["path"]))
  assert sorted(row[points["columns"].index("num_layers")] for row in points["data"]) == [1, 2, 4]
  assert run.config["_wandb"]["visualize"]["val_loss_vs_num_layers"]["panel_config"][
      "panelDefId"] == "wandb/line/v0"
  (report,) = [a for a in run.artifacts if a["type"] == "analysis"]
  assert {"REPORT.md", "results.csv", f"{SWEEP}.png"} <= set(report["files"])


@pytest.mark.slow
def test_finishing_again_updates_the_summary_run_instead_of_adding_one(sweep_dir):
  run_id = wandb_offline.read_run(os.path.join(sweep_dir, "wandb")).run_id
  before = glob.glob(os.path.join(sweep_dir, "wandb", "offline-run-*"))
  plan = launch.make_plan(SWEEP, "smoke", workdir=os.path.dirname(sweep_dir))
  for config in plan.runs:
    config.tracking.wandb_mode = "offline"
  logged = []
  launch.finish(plan, log=logged.append)
  assert "dashboards publish" in logged[-1] and "not written" not in logged[-1]
  after = glob.glob(os.path.join(sweep_dir, "wandb", "offline-run-*"))
  assert len(after) == 1 and after[0].endswith(f"-{run_id}") and after != before
  assert wandb_offline.read_run(os.path.join(sweep_dir, "wandb")).run_id == run_id


def _panels(spec: dict) -> list:
  return [p for s in spec["spec"]["section"]["panelBankConfig"]["sections"] for p in s["panels"]]


def test_depth_vs_width_workspace_is_built_from_code_without_network(no_network):
  headline = sweeps.load_sweep(SWEEP).HEADLINE
  inputs = dashboards.study_inputs(sweep=SWEEP, title=SWEEP, project="mobilellm_jax",
                                   headline=headline, numeric=True, presets=["cpu"],
                                   plots=["plots/depth_vs_width"])
  spec = dashboards.spec(dashboards.build_workspace(inputs, "someone"))
  assert (spec["entity"], spec["project"]) == ("someone", "mobilellm_jax")
  assert spec["displayName"] == SWEEP
  panels = {p["viewType"]: p for p in _panels(spec)}
  chart = panels["Vega2"]["config"]  # final val loss vs layers, one line per seed-aggregated series
  assert chart["panelDefId"] == "wandb/line/v0"
  assert chart["fieldSettings"] == {"x": "num_layers", "y": "val_loss_mean", "stroke": "series"}
  assert "val_loss_vs_num_layers_table" in json.dumps(chart["userQuery"])
  scatter = panels["Scatter Plot"]["config"]
  assert (scatter["xAxis"], scatter["yAxis"]) == ("config:layers.value", "summary:val_loss.last")
  curves = [p["config"] for p in _panels(spec) if p["viewType"] == "Run History Line Plot"]
  assert {c["xAxis"] for c in curves} == {"tokens_seen"}
  assert ["loss"] in [c["metrics"] for c in curves]
  assert ["val_loss"] in [c["metrics"] for c in curves]
  assert all(c["groupBy"] == "point.value" and c["groupArea"] == "stddev" for c in curves)
  weave = json.dumps([p for p in _panels(spec) if p["viewType"] == "Weave"])
  assert '"results"' in weave and '"verdicts"' in weave  # the runs table and the verdicts
  assert panels["Media Browser"]["config"]["mediaKeys"] == ["plots/depth_vs_width"]
  runset = spec["spec"]["section"]["runSets"][0]
  for column in ("config:layers.value", "config:params.value", "config:aspect_ratio.value",
                 "config:tokens_per_param.value", "summary:val_loss.min"):
    assert runset["runFeed"]["columnPinned"][column]
  assert SWEEP in json.dumps(runset["filters"]) and "cpu" in json.dumps(runset["filters"])


def test_a_study_without_a_numeric_axis_gets_bars(no_network):
  inputs = dashboards.study_inputs(sweep="ablation_ladder", title="ablation_ladder",
                                   project="p", headline="label", numeric=False, presets=["cpu"],
                                   plots=[])
  panels = {p["viewType"]: p["config"] for p in _panels(dashboards.spec(
      dashboards.build_workspace(inputs, "someone")))}
  assert panels["Vega2"]["panelDefId"] == "wandb/bar/v0"
  bars = panels["Bar Chart"]
  assert (bars["groupBy"], bars["groupAgg"], bars["groupArea"]) == ("label.value", "mean", "stddev")


@pytest.mark.slow
def test_the_kept_workspace_is_published_by_one_command_and_then_updated(sweep_dir, no_network,
                                                                         monkeypatch):
  import wandb_workspaces.workspaces as ws
  kept = dashboards.read(sweep_dir)
  assert kept["published"] is None and kept["inputs"]["sweep"] == SWEEP
  assert "dashboards publish" in kept["publish"]
  saved = []

  def fake_save(workspace):
    saved.append((workspace._internal_id, dashboards.spec(workspace)))
    workspace._internal_name = workspace._internal_name or "view-1"
    workspace._internal_id = workspace._internal_id or "id-1"
    return workspace

  monkeypatch.setattr(ws.Workspace, "save", fake_save)
  monkeypatch.setattr(ws.Workspace, "url", property(lambda w: f"https://w/{w._internal_name}"))
  assert dashboards.main(["publish", "--sweep_dir", sweep_dir, "--entity", "someone"]) == 0
  assert dashboards.main(["publish", "--sweep_dir", sweep_dir, "--entity", "someone"]) == 0
  assert [view_id for view_id, _ in saved] == ["", "id-1"]  # the second call updates the view
  name_of = lambda spec: [s["name"] for s in spec["spec"]["section"]["panelBankConfig"]["sections"]]
  assert name_of(saved[0][1]) == name_of(kept["workspace"]) and saved[0][1]["entity"] == "someone"
  published = dashboards.read(sweep_dir)["published"]
  assert published == dict(entity="someone", project="mobilellm_jax", view="view-1", id="id-1",
                           url="https://w/view-1")
