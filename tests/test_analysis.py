"""mobilellm_jax.analysis: loading, seed statistics, fits, the paper's data, verdicts, report.

Run directories are fakes from tests/fixtures/analysis/fake_runs.py (a known synthetic law plus
seeded noise), not training runs.
"""

import json
import math
import os
import runpy
import sys
import types

import numpy as np
import pandas as pd
import pytest

from mobilellm_jax import analysis as an
from mobilellm_jax.analysis import fits, paper, plots, results, stats, study, tables, verdicts
from mobilellm_jax.configs import ConfigError
from mobilellm_jax.runner import sweeps
from tests.fixtures.analysis import fake_runs


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  """One fake directory of sweeps (3 seeds, one failed and one in-progress run each)."""
  path = str(tmp_path_factory.mktemp("runs"))
  for kind in fake_runs.KINDS:
    fake_runs.write_sweep(path, kind)
  return path


def _runs(root, kind):
  return results.load_sweep(os.path.join(root, kind)).runs


def _frame(values: dict, **columns) -> pd.DataFrame:
  """Runs of configs (by num_layers) with given per-seed val_loss values."""
  rows = []
  for layers, losses in values.items():
    for seed, loss in enumerate(losses):
      rows.append(dict(name=f"L{layers}-s{seed}", group="g", num_layers=layers, dim=64,
                       params=1e6, seed=seed, val_loss=loss, **columns))
  return pd.DataFrame(rows)


# --- loading ---------------------------------------------------------------------------------

def test_load_sweep_reads_finished_failed_and_running(root):
  sweep = results.load_sweep(os.path.join(root, "depth_vs_width"))
  assert sweep.name == "depth_vs_width"
  assert len(sweep.runs) == 12  # 4 depths x 3 seeds
  (failed_name, message), = sweep.failed.items()
  assert failed_name.endswith("-s3") and message.startswith("NonFiniteLossError: loss is nan")
  assert len(sweep.running) == 1 and sweep.running[0].endswith("-s4")
  row = sweep.runs.iloc[0]
  with open(os.path.join(row["run_dir"], "summary.json")) as f:
    summary = json.load(f)
  # zero-shot flattened into percent columns; config-only fields and device dict become columns
  assert row["zeroshot_avg"] == pytest.approx(100 * summary["zeroshot"]["avg_acc"])
  assert row["zeroshot_piqa"] == pytest.approx(100 * summary["zeroshot"]["tasks"]["piqa"]["acc"])
  assert row["zeroshot_piqa_n"] == 500
  assert row["ffn_dim"] > 0 and row["seq_len"] == fake_runs.SEQ_LEN
  assert row["device_fits_sram_20mb"] is True or row["device_fits_sram_20mb"] == 1
  assert row["val_loss"] == pytest.approx(summary["val_loss"])


def test_load_sweep_of_parent_directory_keeps_sweeps_apart(root):
  sweep = results.load_sweep(root)
  assert sweep.name == os.path.basename(root)  # several groups: the directory names it
  assert set(sweep.groups) == set(fake_runs.KINDS)
  assert len(sweep.group_runs("heads_kv")) == 15
  # Same model in two sweeps stays two configs: the group is part of the key.
  agg = stats.aggregate_seeds(sweep.runs)
  assert (agg["n_seeds"] == 3).all()


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_results_dir_says_what_to_run(tmp_path, make):
  path = tmp_path / "depth_vs_width"
  if make == "empty":
    path.mkdir()
  with pytest.raises(FileNotFoundError, match=r"python experiments/launch.py --sweep depth_vs_width"):
    results.load_sweep(str(path))


def test_only_failed_runs_load_and_report_without_crashing(tmp_path):
  model = fake_runs.shape(4)
  sweep_dir = str(tmp_path / "layer_sharing")
  fake_runs.write_run(sweep_dir, model, seed=0, group="layer_sharing", state="failed")
  fake_runs.write_run(sweep_dir, model, seed=1, group="layer_sharing", state="running")
  sweep = results.load_sweep(sweep_dir)
  assert sweep.runs.empty and len(sweep.failed) == 1 and len(sweep.running) == 1
  with pytest.raises(ValueError, match=r"1 failed.*python experiments/launch.py --sweep layer_sharing"):
    results.require_runs(sweep)
  text = open(an.write_report(sweep_dir)).read()
  assert "No run has finished yet" in text and "NonFiniteLossError" in text


def test_error_message_of_a_bare_traceback_is_its_last_line(tmp_path):
  run_dir = tmp_path / "sweep" / "L2-d64-h2kv1-share_none-s0"
  run_dir.mkdir(parents=True)
  (run_dir / "error.txt").write_text("Traceback (most recent call last):\n  File x\nOSError: disk full\n")
  assert results.load_sweep(str(tmp_path / "sweep")).failed == {run_dir.name: "OSError: disk full"}


def test_load_curves_includes_unfinished_runs_and_skips_torn_lines(root, tmp_path):
  sweep = results.load_sweep(os.path.join(root, "repeat_count"))
  curves = results.load_curves(sweep)
  assert curves["run_dir"].nunique() == 14  # 12 finished + failed + in progress
  assert curves["val_loss"].notna().any() and curves["loss"].notna().any()
  only = results.load_curves(sweep, sweep.runs.head(2))
  assert only["run_dir"].nunique() == 2
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "loss": 5.0}\n{"step": 2, "lo')  # killed mid-write
  assert results.read_metrics(str(path))["step"].tolist() == [1]


def test_load_wandb_maps_runs_and_states():
  def run(name, state, loss, job_type="train"):
    return types.SimpleNamespace(
        name=name, state=state, group="heads_kv", job_type=job_type,
        summary={"val_loss": {"last": loss, "min": loss - 0.5}, "params": 1000, "_step": 3},
        config={"model": {"num_layers": 2, "dim": 64, "ffn_dim": 128}, "train": {"seed": 0},
                "tracking": {"label": "h4"}},
        scan_history=lambda: [{"_step": 1, "loss": 9.0}])
  api = types.SimpleNamespace(runs=lambda path, filters=None: [
      run("a-s0", "finished", 4.0), run("b-s0", "crashed", 0), run("c-s0", "running", 0),
      run("heads_kv summary", "finished", 0, job_type="analysis")])
  sweep = results.load_wandb("proj", entity="me", group="heads_kv", curves=True, api=api)
  assert list(sweep.runs["name"]) == ["a-s0"] and sweep.runs["num_layers"].iloc[0] == 2
  assert sweep.runs["val_loss"].iloc[0] == 4.0  # the last of W&B's {last, min} summary
  assert sweep.runs["ffn_dim"].iloc[0] == 128 and sweep.runs["label"].iloc[0] == "h4"
  assert "_step" not in sweep.runs
  assert list(sweep.failed) == ["b-s0"] and sweep.running == ["c-s0"]
  assert results.load_curves(sweep)["loss"].tolist() == [9.0]


# --- seed statistics -------------------------------------------------------------------------

def test_aggregate_seeds_mean_std_and_deterministic_ci():
  runs = _frame({2: [4.0, 4.2, 4.1], 8: [3.9]})
  agg = stats.aggregate_seeds(runs).set_index("num_layers")
  assert agg.loc[2, "n_seeds"] == 3 and agg.loc[2, "seeds"] == [0, 1, 2]
  assert agg.loc[2, "val_loss_mean"] == pytest.approx(4.1)
  assert agg.loc[2, "val_loss_std"] == pytest.approx(0.1)
  low, high = agg.loc[2, "val_loss_ci_low"], agg.loc[2, "val_loss_ci_high"]
  assert 4.0 <= low < 4.1 < high <= 4.2
  assert (low, high) == stats.bootstrap_ci([4.0, 4.2, 4.1])  # seeded: same every time
  assert math.isnan(agg.loc[8, "val_loss_std"]) and math.isnan(agg.loc[8, "val_loss_ci_low"])


def test_gap_inside_outside_and_unknown_spread():
  outside = stats.gap([4.0, 4.01, 3.99], [4.2, 4.21, 4.19])
  assert outside.diff == pytest.approx(-0.2) and outside.outside_spread is True
  assert outside.ci_high < 0  # the bootstrap interval of the difference excludes 0
  inside = stats.gap([4.0, 4.2, 4.1], [4.05, 4.25, 4.15])
  assert inside.outside_spread is False and "inside the seed spread" in inside.describe("nats")
  unknown = stats.gap([4.0], [4.2])
  assert unknown.outside_spread is None and "one seed" in unknown.describe()
  # One-seed configs borrow the sweep's pooled noise.
  runs = _frame({2: [4.0], 8: [4.2], 16: [4.1, 4.12, 4.08]})
  pooled = stats.compare(runs, {"num_layers": 2}, {"num_layers": 8})
  assert pooled.pooled and pooled.spread == pytest.approx(math.sqrt(2) * 0.02)
  assert pooled.outside_spread is True


def test_rank_configs_marks_configs_within_the_spread_of_the_best():
  runs = _frame({2: [4.3, 4.31, 4.29], 8: [4.0, 4.02, 3.98], 16: [4.01, 4.03, 3.99]})
  ranked = stats.rank_configs(runs)
  assert list(ranked["num_layers"]) == [8, 16, 2]
  assert list(ranked["within_spread_of_best"]) == [True, True, False]
  assert ranked["gap_to_best"].iloc[2] == pytest.approx(0.3)


def test_param_budgets_cluster_matched_counts():
  params = pd.Series([2.10e6, 2.05e6, 2.2e6, 8.0e6, 8.3e6])
  assert list(stats.param_budgets(params)) == ["2.1M", "2.1M", "2.1M", "8.2M", "8.2M"]
  # The launcher's recorded target wins over clustering.
  targets = pd.Series([2e6, 2e6, 2e6, 8e6, 8e6])
  assert list(stats.param_budgets(params, targets=targets)) == ["2M"] * 3 + ["8M"] * 2
  assert stats.format_count(124_635_456) == "125M"


# --- scaling-law fits ------------------------------------------------------------------------

@pytest.mark.slow
def test_power_law_fit_recovers_known_parameters():
  rng = np.random.default_rng(0)
  n = np.repeat(np.geomspace(1e5, 1e8, 8), 3)
  loss = 1.8 + 400.0 * n ** -0.34 + rng.normal(0, 0.005, n.size)
  fit = fits.fit_power_law(n, loss)
  assert fit.alpha == pytest.approx(0.34, abs=0.01)
  assert fit.e == pytest.approx(1.8, abs=0.02) and fit.a == pytest.approx(400, rel=0.1)
  for name, truth in (("alpha", 0.34), ("e", 1.8), ("a", 400.0)):
    low, high = fit.intervals[name]
    assert low < truth < high, name
  boot = fits.fit_power_law(n, loss, num_bootstrap=40, seed=1)
  assert boot.intervals["alpha"][0] < 0.34 < boot.intervals["alpha"][1]
  assert boot.intervals == fits.fit_power_law(n, loss, num_bootstrap=40, seed=1).intervals
  np.testing.assert_allclose(fit.predict([1e6]), 1.8 + 400 * 1e6 ** -0.34, atol=0.01)


def test_pure_power_law_and_fit_errors():
  c = np.geomspace(1e12, 1e15, 6)
  fit = fits.fit_power_law(c, 50.0 * c ** -0.05, irreducible=False, x_name="C")
  assert fit.alpha == pytest.approx(0.05, abs=1e-6) and fit.a == pytest.approx(50.0, rel=1e-4)
  assert "C^-0.050" in str(fit)
  with pytest.raises(ValueError, match="needs >= 3 distinct"):
    fits.fit_power_law([1e6, 1e6, 2e6], [4.0, 4.1, 3.9])
  with pytest.raises(ValueError, match="does not fall"):
    fits.fit_power_law([1e6, 2e6, 4e6, 8e6], [3.0, 3.2, 3.4, 3.6])
  # A 32-layer model's losses at 0.5M-4M tokens: straight in log C, so E has no floor to fit.
  with pytest.raises(ValueError, match="no bend toward an irreducible loss"):
    fits.fit_power_law([9.26e12, 1.845e13, 3.682e13, 7.356e13], [5.2057, 4.7635, 4.2741, 3.8233])


def test_fit_families_recover_the_fake_laws_exponents(root):
  by_size = fits.fit_families(_runs(root, "model_size"), "params")
  (fit,) = by_size["fit"]
  assert fit.intervals["alpha"][0] < fake_runs.LAW["alpha"] < fit.intervals["alpha"][1]
  by_compute = fits.fit_families(_runs(root, "depth_vs_tokens"), "train_flops")
  assert len(by_compute) == 3  # one per depth
  for fit in by_compute["fit"]:  # at fixed N, C is proportional to D: the exponent is beta
    assert fit.intervals["alpha"][0] < fake_runs.LAW["beta"] < fit.intervals["alpha"][1]
    assert fit.alpha == pytest.approx(fake_runs.LAW["beta"], abs=0.08)
  # parameter-matched runs span ~1.05x in N: reported as unfittable, not fitted to noise
  matched = fits.fit_families(_runs(root, "depth_vs_width"), "params")
  assert matched["fit"].isna().all() and matched["error"].str.contains("spans only").all()


# --- the paper's numbers ---------------------------------------------------------------------

def test_paper_tables_are_consistent_and_derived_results_follow_them():
  for model, row in paper.FINAL_MODELS.items():
    assert np.mean([row[t] for t in paper.TASKS]) == pytest.approx(row["avg"], abs=0.06), model
  assert paper.DEPTH_VS_WIDTH["125M"][4] == (30, 512, 44.8)
  assert paper.ARCHITECTURES["125M"][5] == 124_635_456
  depth = paper.depth_result("125M")
  assert depth.winner.startswith("24/30 layers") and depth.margin == pytest.approx(1.5)
  assert paper.sharing_result("350M").winner.startswith("repeat_all")
  assert paper.ladder_deltas("125M")["embedding_sharing"] == pytest.approx(-0.2)
  assert paper.ladder_result("350M").margin == pytest.approx(3.6)
  assert paper.embedding_result().winner.startswith("tied_deeper")


# --- verdicts --------------------------------------------------------------------------------

def test_depth_verdict_names_best_depth_and_agrees(root):
  found = verdicts.depth_vs_width(_runs(root, "depth_vs_width"))
  loss = next(v for v in found if "validation loss" in v.text)
  assert loss.text.startswith("deeper beat wider at 2.1M params")
  assert "best depth 8 vs shallowest 2" in loss.text and "outside the seed spread" in loss.text
  assert loss.status == "agrees"


def test_depth_verdict_is_inconclusive_under_noise_or_one_seed(tmp_path):
  noisy = fake_runs.write_sweep(str(tmp_path / "noisy"), "depth_vs_width", noise=0.3,
                                zeroshot=False)
  (verdict,) = verdicts.depth_vs_width(results.load_sweep(noisy).runs)
  assert verdict.status == "inconclusive" and "inside the seed spread" in verdict.text
  single = fake_runs.write_sweep(str(tmp_path / "single"), "depth_vs_width", seeds=(0,),
                                 zeroshot=False)
  (verdict,) = verdicts.depth_vs_width(results.load_sweep(single).runs)
  assert verdict.status == "inconclusive" and "one seed" in verdict.text


def test_sweep_kind_from_a_scaled_directory_name():
  assert study.kind_of("depth_vs_width-smoke") == "depth_vs_width"
  assert study.kind_of("layer_sharing") == "layer_sharing"
  assert study.kind_of("my-study") == "my-study"  # unknown: generic verdicts


def test_every_sweep_declares_how_it_is_read():
  """Each sweep file names a known plot and verdict rule; the ladder maps the label of every run
  it makes, at every scale, to a step of the paper; a study with no sweep file is generic."""
  assert set(verdicts.RULES) == set(study.RULES)
  for name in sweeps.list_sweeps():
    declared = study.of(name + "-smoke")
    assert declared.kind == name and declared.verdicts == name, name
    assert declared.plot in study.PLOTS and declared.headline
  ladder = study.of("ablation_ladder")
  for scale in sweeps.SCALES:
    labels = [c.tracking.label for c in sweeps.expand("ablation_ladder", scale)]
    steps = list(dict.fromkeys(ladder.paper_steps.get(label) for label in labels))  # seeds once
    assert steps == [s.key for s in paper.ABLATION_LADDER], (scale, labels)
  assert study.of("my-study") == study.Study("my-study")


def test_a_sweep_file_naming_an_unknown_rule_or_plot_is_refused(tmp_path, monkeypatch):
  (tmp_path / "odd.py").write_text('VERDICTS = "depth_vs_breadth"\n'
                                   'def get_runs(scale):\n  return []\n')
  monkeypatch.setenv("MOBILELLM_SWEEPS_DIR", str(tmp_path))
  with pytest.raises(ConfigError, match=r"sweeps/odd.py: VERDICTS = 'depth_vs_breadth'"):
    study.of("odd")


def test_depth_verdict_flips_when_the_data_flips():
  runs = _frame({2: [3.90, 3.91, 3.89], 4: [4.0, 4.01, 3.99], 8: [4.1, 4.11, 4.09]},
                num_heads=4, num_kv_heads=2)
  (verdict,) = verdicts.depth_vs_width(runs)
  assert verdict.text.startswith("wider beat deeper") and verdict.status == "disagrees"
  assert "best depth 2 vs next best 4" in verdict.text


def _ladder_runs(root):
  return study.with_paper_steps(_runs(root, "ablation_ladder"), study.of("ablation_ladder"))


def test_ladder_verdicts_follow_the_sign_of_each_step(root):
  runs = _ladder_runs(root)
  found = [v for v in verdicts.ablation_ladder(runs) if "validation loss" in v.text]
  swiglu = next(v for v in found if v.text.startswith("'2 + SwiGLU'"))
  assert "better than '1 baseline'" in swiglu.text and swiglu.status == "agrees"
  # Make SwiGLU worse than the baseline: the same code must now report disagreement.
  flipped = runs.copy()
  flipped.loc[flipped["label"] == "2 + SwiGLU", "val_loss"] += 0.5
  swiglu = next(v for v in verdicts.ablation_ladder(flipped) if v.text.startswith("'2 + SwiGLU'"))
  assert "worse than '1 baseline'" in swiglu.text and swiglu.status == "disagrees"


def test_sharing_repeat_embedding_and_heads_verdicts(root):
  sharing = verdicts.layer_sharing(_runs(root, "layer_sharing"))
  best = next(v for v in sharing if v.text.startswith("best strategy on validation loss"))
  assert "repeat_all" in best.winner and best.status == "agrees"  # the fake law gives it 1.3x
  repeats = verdicts.repeat_count(_runs(root, "repeat_count"))
  returns = next(v for v in repeats if v.text.startswith("returns on validation loss"))
  assert "— diminishing" in returns.text and returns.status == "agrees"
  embedding_runs = _runs(root, "embedding_sharing")
  embedding = verdicts.embedding_sharing(embedding_runs)
  untied = embedding_runs.loc[~embedding_runs["tie_embeddings"], "params"].iloc[0]
  tied = embedding_runs.loc[embedding_runs["tie_embeddings"] & (embedding_runs["num_layers"] == 8),
                            "params"].iloc[0]
  assert f"saves {1 - tied / untied:.1%} of parameters" in embedding[0].text
  heads = verdicts.heads_kv(_runs(root, "heads_kv"))
  assert any(v.text.startswith("4 query heads, KV heads 4 -> 1") for v in heads)


def test_zeroshot_at_chance_is_called_out():
  runs = _frame({2: [4.0, 4.1], 8: [3.9, 3.95]}, zeroshot_avg=35.6, zeroshot_chance=35.4,
                **{f"zeroshot_{t}_n": 100 for t in paper.TASKS})
  assert "carry no signal" in verdicts.zeroshot_chance(runs).text
  runs["zeroshot_avg"] = 45.0
  assert "above chance" in verdicts.zeroshot_chance(runs).text


def test_zeroshot_of_the_best_run_only_is_a_note_not_a_comparison():
  """Scoring one run of a sweep (its best) adds a note against chance; the configs are still
  compared on validation loss alone."""
  runs = _frame({2: [4.0, 4.01, 3.99], 8: [3.9, 3.91, 3.89]}, num_heads=4, num_kv_heads=2,
                **{f"zeroshot_{t}_n": 1000 for t in paper.TASKS}, zeroshot_chance=35.4)
  runs["zeroshot_avg"] = [np.nan] * 3 + [32.5, np.nan, np.nan]
  found = verdicts.for_sweep("depth_vs_width", runs)
  assert [v.text.split(" at ")[0] for v in found[:-1]] == ["deeper beat wider"]
  assert found[-1].text.startswith("zero-shot: the scored config is below chance")


# --- tables, plots, report -------------------------------------------------------------------

def test_tables_put_paper_next_to_ours(root):
  agg = stats.aggregate_seeds(_ladder_runs(root))
  ladder = tables.ladder(agg)
  assert list(ladder["paper 125M"]) == [f"{s.acc_125m:.1f}" for s in paper.ABLATION_LADDER]
  assert ladder["paper Δ 350M"].iloc[3] == "-0.6"  # + embedding sharing: 49.8 -> 49.2
  assert ladder["Δ val_loss"].iloc[0] == "" and ladder["Δ val_loss"].iloc[1].startswith("-")
  sharing = tables.sharing(stats.aggregate_seeds(_runs(root, "layer_sharing")))
  assert sharing.set_index("strategy").loc["repeat_all x2", "paper 350M"] == "50.7"
  text = tables.markdown(pd.DataFrame({"a": [1.23456, math.nan], "b": ["x|y", None]}))
  assert text.splitlines() == ["| a | b |", "|---|---|", "| 1.235 | x/y |", "|  |  |"]


def test_plots_draw_one_series_per_config_group(root):
  agg = stats.aggregate_seeds(_runs(root, "depth_vs_width"))
  fig = plots.plot_depth(agg)
  assert len(fig.axes) == 2  # loss and zero-shot
  assert len(fig.axes[0].lines[0].get_xdata()) == 4  # four depths on one budget line
  fig = plots.plot_bars(tables.order_ladder(stats.aggregate_seeds(_ladder_runs(root))),
                        "label", deltas=True)
  assert len(fig.axes[0].patches) == 6 and len(fig.axes[0].texts) == 5  # 5 deltas for 6 bars


def test_write_report_and_cli(root, capsys, monkeypatch):
  sweep_dir = os.path.join(root, "layer_sharing")
  script = os.path.join(os.path.dirname(__file__), "..", "analysis", "report.py")
  monkeypatch.setattr(sys, "argv", ["report.py", "--workdir", sweep_dir])
  with pytest.raises(SystemExit) as exit_info:
    runpy.run_path(script, run_name="__main__")
  assert exit_info.value.code == 0
  path = capsys.readouterr().out.strip()
  assert path == os.path.join(sweep_dir, "REPORT.md")
  text = open(path).read()
  assert "## Verdicts" in text and "repeat_all x2 beat no sharing" in text
  assert "| paper | 350M | repeat_all (50.7) | none (49.6) | +1.1 points |" in text
  for png in ("layer_sharing_sharing.png", "layer_sharing_curves.png"):
    assert f"]({png})" in text
    with open(os.path.join(sweep_dir, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert "## Failed runs" in text and "## In progress" in text
  monkeypatch.setattr(sys, "argv", ["report.py", "--workdir", os.path.join(root, "nope")])
  with pytest.raises(SystemExit) as exit_info:
    runpy.run_path(script, run_name="__main__")
  assert exit_info.value.code == 1 and "--sweep nope" in capsys.readouterr().err


def test_released_preset_runs_get_the_papers_per_task_table(root):
  runs = _runs(root, "depth_vs_width").assign(preset="mobilellm_125m")
  final = tables.final_models(runs).set_index("source")
  paper_row = final.loc["paper (1T tokens)"]
  assert paper_row["model"] == "125M" and paper_row["avg"] == 46.3 and paper_row["piqa"] == 65.3
  ours = final.drop(index="paper (1T tokens)").iloc[0]
  assert ours["avg"] == pytest.approx(runs["zeroshot_avg"].mean())
  assert tables.final_models(runs.assign(preset="cpu")).empty  # no released counterpart
  captions = [caption for caption, _ in an.analyze(runs, "depth_vs_width").tables]
  assert any("Released models" in c for c in captions) and any("baselines" in c for c in captions)


def test_reproduction_scores_each_evaluated_run_against_chance(tmp_path):
  """A run whose eval.json holds the eight tasks gets a row with its loss, bits per byte and
  margin over chance; a margin beyond 2 standard errors either way is named, and a run scored
  on fewer tasks is left out."""
  from mobilellm_jax.analysis import reproduction  # pylint: disable=import-outside-toplevel
  def write(run, acc, tasks=paper.TASKS):
    os.makedirs(tmp_path / "a_study" / run)
    scored = {t: dict(acc=acc, chance=0.25, num_questions=1000) for t in tasks}
    (tmp_path / "a_study" / run / "eval.json").write_text(json.dumps(dict(
        validation=dict(loss=4.5, bits_per_byte=1.8),
        zeroshot=dict(tasks=scored, avg_acc=acc, avg_chance=0.25))))
  assert "No run has been scored yet" in "\n".join(reproduction.zeroshot_section(str(tmp_path)))
  write("good", 0.30)
  write("biased", 0.20)
  write("level", 0.25)
  write("partial", 0.9, tasks=paper.TASKS[:2])
  lines = "\n".join(reproduction.zeroshot_section(str(tmp_path))).splitlines()
  rows = {l.split(" | ")[1]: l for l in lines if l.startswith("| a_study |")}
  assert set(rows) == {"good", "biased", "level"}
  assert rows["good"].endswith("+5.0 ± 0.6: above chance |") and "| 4.500 | 1.800 |" in rows["good"]
  assert rows["biased"].endswith("below chance |") and rows["level"].endswith("at chance |")


def test_reproduction_has_a_verdict_row_per_finding_and_keeps_the_prose(root, tmp_path):
  from mobilellm_jax.analysis import reproduction  # pylint: disable=import-outside-toplevel
  path = tmp_path / "REPRODUCTION.md"
  path.write_text("# Reproduction\n\nWhy validation loss.\n\n" + reproduction.BEGIN + "\nstale\n"
                  + reproduction.END + "\n\nAfterword.\n")
  reproduction.write_reproduction(str(root), str(path))
  text = path.read_text()
  assert text.startswith("# Reproduction\n\nWhy validation loss.") and "Afterword." in text
  assert "stale" not in text and text.count(reproduction.BEGIN) == 1
  for sweep, question in reproduction.STUDIES:
    section = text.split(f"### {question}")[1].split("### ")[0]
    command = f"python experiments/launch.py --sweep {sweep} --workdir {root}"
    assert command in section, sweep
    if sweep in fake_runs.KINDS:
      assert "seeds 0, 1, 2" in section and "tokens/param" in section
      verdict_rows = [l for l in section.splitlines() if l.startswith("| ") and "verdict" not in l]
      assert verdict_rows and all(l.rstrip().endswith(("reproduced |", "scale |",
                                                        "counterpart |")) for l in verdict_rows)
    else:
      assert "Not run yet at cpu scale" in section
  # The fake depth-vs-width law has deeper winning outside the noise: a reproduced row.
  depth = text.split("### Depth vs width")[1].split("### ")[0]
  assert "deeper beat wider" in depth and "| reproduced |" in depth


def test_recipe_fairness_names_the_best_recipe_per_depth_and_a_recipe_that_picks_the_winner():
  rows = []
  # (layers, init, lr) -> two seeds; fixed init favours 1 layer, fan_in_depth favours 8. The
  # fixed init's best rate moves with depth; fan_in_depth's 3e-3 is level with the best at 1 layer.
  losses = {(1, "fixed", 3e-3): (4.75, 4.76), (8, "fixed", 3e-3): (5.04, 5.05),
            (1, "fixed", 6e-3): (4.70, 4.71), (8, "fixed", 6e-3): (5.16, 5.17),
            (1, "fan_in_depth", 3e-3): (4.70, 4.71), (8, "fan_in_depth", 3e-3): (4.62, 4.63),
            (1, "fan_in_depth", 6e-3): (4.69, 4.705), (8, "fan_in_depth", 6e-3): (4.80, 4.81)}
  for (layers, init, lr), values in losses.items():
    for seed, loss in enumerate(values):
      rows.append(dict(name=f"L{layers}-{init}-lr{lr:g}-s{seed}", group="recipe_fairness",
                       label=f"{layers}L {init} {lr:g}", num_layers=layers, dim=64, params=1e6,
                       init_scheme=init, peak_lr=lr, seed=seed, val_loss=loss))
  found = [v.text for v in verdicts.for_sweep("recipe_fairness", pd.DataFrame(rows))]
  assert any(t.startswith("8 layers: best recipe fan_in_depth init, LR 0.003 (4.625), ahead of "
                          "fan_in_depth init, LR 0.006") for t in found), found
  assert ("fixed init: the best peak LR is 0.006 at 1 layers, 0.003 at 8 layers: no rate is level "
          "with the best at every depth, so one rate favours some depths") in found, found
  assert ("fan_in_depth init: the best peak LR is 0.006 at 1 layers (0.003 within the seed "
          "spread), 0.003 at 8 layers: 0.003 is best or level with the best at every depth tried, "
          "so one rate serves every depth") in found, found
  winners = next(t for t in found if t.startswith("best depth per recipe"))
  assert "fixed init at LR 0.003: 1 layers (of 2)" in winners
  assert "fan_in_depth init at LR 0.003: 8 layers (of 2)" in winners
  assert winners.endswith("the recipe changes which depth wins, so it decides the depth-vs-width "
                          "verdict")


def test_best_depth_law_recovers_a_known_optimum_trend():
  # Loss is a parabola in log2(depth) whose vertex sits at depth 4 * (tokens/param)^0.5.
  import numpy as np  # pylint: disable=import-outside-toplevel
  import pandas as pd  # pylint: disable=import-outside-toplevel
  params, rows = 2_000_000, []
  for tpp in (0.25, 0.5, 1.0, 2.0):
    best = np.log2(4 * tpp ** 0.5)
    for layers, dim in ((2, 224), (4, 160), (8, 128), (16, 96), (32, 64)):
      rows.append(dict(tokens_seen=tpp * params, params=params, num_layers=layers, dim=dim,
                       val_loss_mean=5 - tpp + 0.05 * (np.log2(layers) - best) ** 2))
  agg = pd.DataFrame(rows)
  points = verdicts.interpolated_best_depths(agg)
  assert [round(d, 6) for _, d, _ in points] == [round(4 * t ** 0.5, 6) for t, _, _ in points]
  text = verdicts.best_depth_law(agg)
  assert "best depth ~ (tokens/param)^0.50 [0.50, 0.50]" in text
  # 4 * 2000^0.5 = 179 layers at the paper's tokens per parameter.
  assert "2,000 tokens/param at this size: 179 layers" in text
  assert verdicts.best_depth_law(agg[agg["tokens_seen"] <= params * 0.5]) is None
