"""The sweep launcher: plans, bad input, a real smoke sweep, skipping, failures, shards, SLURM."""

import os

import pytest

from mobilellm_jax.analysis import results
from mobilellm_jax.runner import launch, sweeps
from mobilellm_jax.configs import ConfigError
from experiments import launch as launch_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", sweeps.list_sweeps())
@pytest.mark.parametrize("scale", sweeps.SCALES)
def test_every_sweep_expands_to_valid_named_runs(name, scale):
  runs = sweeps.expand(name, scale)
  assert runs and all(c.tracking.group == name for c in runs)


def test_named_runs_take_a_seed_suffix_for_other_seeds():
  """depth_vs_tokens names its runs by point: seed 0 keeps that name (the committed results),
  other seeds add -s<seed>, and the analysis reads them as seeds of one point."""
  names = [launch.run_name(c) for c in sweeps.expand("depth_vs_tokens", "smoke", seeds=[0, 1])]
  assert len(set(names)) == len(names) == 8
  assert {n for n in names if not n.endswith("-s1")} == {n[:-3] for n in names if n.endswith("-s1")}
  assert {results.config_id(n) for n in names} == {n for n in names if not n.endswith("-s1")}


def test_seeds_replace_the_seeds_a_sweep_file_lists_itself():
  """layer_sharing lists three seeds per strategy at cpu scale: --seeds 5 trains each strategy
  once, at seed 5, not three runs of one name."""
  runs = sweeps.expand("layer_sharing", "cpu", seeds=[5])
  assert sorted(c.tracking.label for c in runs) == sorted(
      c.tracking.label for c in sweeps.expand("layer_sharing", "cpu") if c.train.seed == 0)
  assert {c.train.seed for c in runs} == {5}
  assert len(sweeps.expand("layer_sharing", "cpu", seeds=[0, 1, 2, 5])) == 4 * len(runs)


def test_depth_vs_width_cpu_is_parameter_matched_within_2_percent():
  rows = [launch.run_row(c) for c in sweeps.expand("depth_vs_width", "cpu")]
  depths = sorted({r["layers"] for r in rows})
  assert len(depths) >= 4 and depths[0] <= 2 and depths[-1] >= 16
  assert all(abs(r["budget_deviation"]) <= 0.02 for r in rows), rows


def test_paper_scale_uses_the_papers_grids():
  rows = [launch.run_row(c) for c in sweeps.expand("depth_vs_width", "paper")]
  assert {(r["layers"], r["dim"]) for r in rows} >= {(30, 512), (62, 384), (32, 896), (66, 640)}
  assert all(r["tokens"] == 120_000 * 1024 * 2048 for r in rows)


def test_paper_scale_runs_have_the_papers_sizes():
  """Every paper-scale run whose size the paper states is within 0.5% of it; the ladder's last two
  steps are the released MobileLLM-125M and -LS exactly."""
  checked = 0
  for name in sweeps.list_sweeps():
    for row in map(launch.run_row, sweeps.expand(name, "paper")):
      if row["paper_params"]:
        assert abs(row["paper_deviation"]) <= 0.005, (name, row["name"], row["params"])
        checked += 1
  assert checked >= 11
  ladder = [launch.run_row(c) for c in sweeps.expand("ablation_ladder", "paper")]
  for step in ladder[4:]:
    assert (step["layers"], step["dim"], step["heads"], step["params"]) == (
        30, 576, "9/3", 124_635_456)
  embedding = [launch.run_row(c) for c in sweeps.expand("embedding_sharing", "paper")]
  assert [r["layers"] for r in embedding] == [30, 30, 32]


def test_dry_run_prints_the_recipe_and_regime_of_every_run(capsys):
  assert launch_cli.main(["--sweep", "depth_vs_width", "--dry_run"]) == 0
  out = capsys.readouterr().out
  for column in ("peak LR", "warmup", "batch", "tok/param", "emb %", "D/L"):
    assert column in out
  assert " 16x256 " in out


def test_dry_run_prints_every_run_with_footprint(capsys):
  assert launch_cli.main(["--sweep", "layer_sharing", "--scale", "paper", "--dry_run"]) == 0
  out = capsys.readouterr().out
  for strategy in ("none", "immediate", "repeat_all", "reverse"):
    assert f"share_{strategy}" in out
  assert "A100-days" in out and "MB/token" in out and "345,355,200" in out
  assert "345.4M (+0.0%)" in out  # the paper's count beside ours


def test_shard_takes_every_nth_run():
  runs = [c.tracking.label for c in sweeps.expand("depth_vs_width", "cpu")]
  assert [c.tracking.label for c in sweeps.expand("depth_vs_width", "cpu", shard="1/3")] == runs[1::3]


@pytest.mark.parametrize("argv,needle", [
    (["--sweep", "depth_vs_breadth"], "known sweeps: ablation_ladder"),
    (["--sweep", "depth_vs_width", "--scale", "huge"], "known scales: smoke, cpu, paper"),
    (["--sweep", "depth_vs_width", "--shard", "3of16"], "--shard must look like i/n"),
    (["--sweep", "depth_vs_width", "--shard", "16/16"], "0 <= i < n"),
    (["--sweep", "depth_vs_width", "--seeds", "a,b"], "--seeds must be"),
])
def test_bad_input_is_a_clear_error(argv, needle, capsys):
  assert launch_cli.main(argv + ["--dry_run"]) == 2
  assert needle in capsys.readouterr().err


def test_sweep_file_with_invalid_config_fails_before_training(tmp_path, monkeypatch, capsys):
  (tmp_path / "broken.py").write_text(
      "from mobilellm_jax.runner.sweeps import base_config\n"
      "def get_runs(scale):\n"
      "  config = base_config(scale)\n"
      "  config.model.num_kv_heads = 3\n"
      "  return [config]\n")
  monkeypatch.setattr(sweeps, "SWEEPS_DIR", str(tmp_path))
  assert launch_cli.main(["--sweep", "broken", "--scale", "smoke", "--workdir", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert "sweep 'broken'" in err and "config.model.num_kv_heads" in err
  assert not (tmp_path / "broken-smoke").exists()


def test_sweeps_are_found_without_the_checkout_next_to_the_package(tmp_path, monkeypatch):
  """A non-editable install has no sweeps/ beside the package: the repository root's (the working
  directory's) or $MOBILELLM_SWEEPS_DIR's are used, and neither gives a clear error."""
  monkeypatch.setattr(sweeps, "SWEEPS_DIR", str(tmp_path / "site-packages" / "sweeps"))
  (tmp_path / "repo" / "sweeps").mkdir(parents=True)
  (tmp_path / "repo" / "sweeps" / "mine.py").write_text("def get_runs(scale):\n  return []\n")
  monkeypatch.chdir(tmp_path / "repo")
  assert sweeps.list_sweeps() == ["mine"]
  monkeypatch.setenv("MOBILELLM_SWEEPS_DIR", os.path.join(REPO, "sweeps"))
  assert "depth_vs_width" in sweeps.list_sweeps()
  monkeypatch.delenv("MOBILELLM_SWEEPS_DIR")
  monkeypatch.chdir(tmp_path)
  with pytest.raises(ConfigError, match="no sweeps/ folder: run from the repository root"):
    sweeps.list_sweeps()


@pytest.mark.slow
def test_smoke_sweep_end_to_end_then_relaunch_skips(data_dir, tmp_path, capsys):
  argv = ["--sweep", "depth_vs_width", "--scale", "smoke", "--workdir", str(tmp_path),
          "--data_dir", data_dir]
  assert launch_cli.main(argv) == 0
  sweep_dir = tmp_path / "depth_vs_width-smoke"
  runs = [c for c in sweeps.expand("depth_vs_width", "smoke")]
  for config in runs:
    assert (sweep_dir / launch.run_name(config) / "summary.json").exists()
  for name in ("results.csv", "results.md", "depth_vs_width.png"):
    assert (sweep_dir / name).exists(), name
  out = capsys.readouterr().out
  assert all(launch.run_name(c) in out for c in runs)
  # W&B offline by default: a local run per training run, grouped by the sweep
  first = sweep_dir / launch.run_name(runs[0])
  assert any(d.startswith("offline-run-") for d in os.listdir(first / "wandb"))
  assert (sweep_dir / "REPORT.md").exists()
  assert launch_cli.main(argv) == 0
  assert f"{len(runs)} already done, 0 to train" in capsys.readouterr().out
  # A second seed of one point: the sweep's table then holds every finished run, not only the
  # runs this invocation asked for.
  point = launch.run_name(runs[0])[:-len("-s0")]
  assert launch_cli.main(argv + ["--seeds", "1", "--only", point + "-*"]) == 0
  table = (sweep_dir / "results.csv").read_text()
  assert all(launch.run_name(c) in table for c in runs) and f"{point}-s1" in table


@pytest.mark.slow
def test_failed_run_is_recorded_and_the_sweep_goes_on(data_dir, tmp_path, monkeypatch, capsys):
  import mobilellm_jax.training.loop as train_module
  real_train = train_module.train

  def flaky_train(config, workdir, devices=None, restart=False):
    if config.model.num_layers == 2:
      raise RuntimeError("simulated crash")
    return real_train(config, workdir, devices, restart=restart)

  monkeypatch.setattr(train_module, "train", flaky_train)
  argv = ["--sweep", "depth_vs_width", "--scale", "smoke", "--workdir", str(tmp_path),
          "--data_dir", data_dir, "--only", "L[12]-*"]
  assert launch_cli.main(argv) == 1  # one failure
  sweep_dir = tmp_path / "depth_vs_width-smoke"
  failed = [d for d in os.listdir(sweep_dir) if (sweep_dir / d / "error.txt").exists()]
  assert len(failed) == 1 and failed[0].startswith("L2-")
  assert "simulated crash" in (sweep_dir / failed[0] / "error.txt").read_text()
  assert any((sweep_dir / d / "summary.json").exists() for d in os.listdir(sweep_dir))
  assert "FAILED L2-" in capsys.readouterr().err


@pytest.mark.slow
def test_slurm_backend_through_submitit_local_executor(data_dir, tmp_path):
  import submitit
  plan = launch.make_plan("depth_vs_width", "smoke", workdir=str(tmp_path), data_dir=data_dir,
                          only="L1-*")
  assert len(plan.runs) == 1
  executor = submitit.LocalExecutor(folder=str(tmp_path / "submitit"))
  executor.update_parameters(timeout_min=10)
  statuses = launch.execute(plan, backend="slurm", executor=executor)
  assert [s["status"] for s in statuses] == ["done"]
  assert (tmp_path / "depth_vs_width-smoke" / launch.run_name(plan.runs[0]) / "summary.json").exists()


@pytest.mark.parametrize("name", [n for n in sweeps.list_sweeps()
                                  if os.path.isdir(os.path.join(REPO, "results", n))])
def test_the_committed_results_hold_every_planned_cpu_run(name):
  """results/<sweep>/ is the shipped study: every run its sweep file plans at cpu scale (each
  seed it declares) has a summary there, so its tables and REPRODUCTION.md rows are complete."""
  from mobilellm_jax.analysis import reproduction  # pylint: disable=import-outside-toplevel
  missing, planned = reproduction.missing_runs(os.path.join(REPO, "results"), name)
  assert planned and not missing, f"{name}: {len(missing)} of {planned} planned runs missing"
