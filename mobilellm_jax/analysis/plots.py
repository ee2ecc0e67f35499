"""The sweeps' plots as matplotlib Figures on the Agg canvas (no pyplot, no global backend switch:
safe in scripts, threads and notebooks, where a returned Figure displays inline).

Error bars are the standard deviation over seeds; a config with one seed has none.
"""

import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mobilellm_jax.analysis import stats
from mobilellm_jax.analysis.results import config_id

LABELS = {"val_loss": "validation loss (nats/token)", "zeroshot_avg": "zero-shot avg accuracy (%)"}


def figure(num_panels: int = 1, width: float = 5.0, height: float = 3.6) -> tuple[Figure, list]:
  fig = Figure(figsize=(width * num_panels, height), layout="constrained")
  FigureCanvasAgg(fig)
  axes = [fig.add_subplot(1, num_panels, i + 1) for i in range(num_panels)]
  return fig, axes


def save(fig: Figure, path: str) -> str:
  fig.savefig(path, dpi=110)
  return path


def _metrics(agg: pd.DataFrame) -> list[str]:
  return [m for m in ("val_loss", "zeroshot_avg") if f"{m}_mean" in agg and
          agg[f"{m}_mean"].notna().any()]


def _errors(agg: pd.DataFrame, metric: str):
  std = agg[f"{metric}_std"].to_numpy(dtype=np.float64)
  return None if not np.isfinite(std).any() else np.nan_to_num(std)


def _chance_line(ax, agg: pd.DataFrame, metric: str) -> None:
  if metric == "zeroshot_avg" and "zeroshot_chance" in agg and agg["zeroshot_chance"].notna().any():
    ax.axhline(float(agg["zeroshot_chance"].mean()), color="gray", ls=":", lw=1, label="chance")


def plot_depth(agg: pd.DataFrame, x: str = "num_layers") -> Figure:
  """Metrics against depth, one line per parameter budget (the paper's Fig. 4 analogue)."""
  metrics = _metrics(agg)
  fig, axes = figure(len(metrics))
  budgets = stats.budgets_of(agg)
  for ax, metric in zip(axes, metrics):
    for budget in dict.fromkeys(budgets):
      part = agg[budgets == budget].sort_values(x)
      ax.errorbar(part[x], part[f"{metric}_mean"], yerr=_errors(part, metric), marker="o",
                  capsize=3, label=f"{budget} params")
      for _, row in part.iterrows():
        ax.annotate(f"d{row['dim']}", (row[x], row[f"{metric}_mean"]), fontsize=7,
                    textcoords="offset points", xytext=(3, 4))
    _chance_line(ax, agg, metric)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("layers (log scale; width shrinks as depth grows)")
    ax.set_ylabel(LABELS[metric])
    ax.legend(fontsize=8)
  fig.suptitle("Depth vs width at fixed parameters")
  return fig


def plot_bars(agg: pd.DataFrame, label_column: str, *, title: str = "", deltas: bool = False,
              baseline: int | None = None) -> Figure:
  """One bar per config, in the frame's order. deltas: annotate each bar with its change over
  the previous bar (the ablation ladder); baseline: over that row instead."""
  metrics = _metrics(agg)
  fig, axes = figure(len(metrics), width=max(4.5, 1.1 * len(agg)))
  labels = [str(v) for v in agg[label_column]]
  for ax, metric in zip(axes, metrics):
    means = agg[f"{metric}_mean"].to_numpy(dtype=np.float64)
    positions = np.arange(len(agg))
    errors = _errors(agg, metric)
    ax.bar(positions, means, yerr=errors, capsize=3, color="tab:blue", alpha=0.8)
    spread = errors if errors is not None else np.zeros_like(means)
    low, high = np.nanmin(means - spread), np.nanmax(means + spread)
    pad = max(high - low, 1e-3)
    # The axis starts near the data (not at 0), so gaps of a few hundredths of a nat show.
    ax.set_ylim(low - 0.3 * pad, high + 0.25 * pad)
    digits = 3 if metric == "val_loss" else 1
    for i, mean in enumerate(means):
      reference = (i - 1 if deltas else baseline)
      if reference is not None and 0 <= reference < len(means) and reference != i:
        top = mean + (errors[i] if errors is not None else 0.0)  # above the error bar
        ax.annotate(f"{mean - means[reference]:+.{digits}f}", (i, top), ha="center", fontsize=8,
                    textcoords="offset points", xytext=(0, 4))
    _chance_line(ax, agg, metric)
    ax.set_xticks(positions, labels, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(LABELS[metric])
  if title:
    fig.suptitle(title)
  return fig


def plot_repeats(agg: pd.DataFrame) -> Figure:
  """Metrics against the repeat count, one line per sharing strategy."""
  metrics = _metrics(agg)
  fig, axes = figure(len(metrics))
  for ax, metric in zip(axes, metrics):
    # 1x is 'none' (or a strategy at 1 repeat): it starts every strategy's line.
    base = agg[agg["share_repeats"] == 1]
    strategies = sorted(set(agg["layer_sharing"]) - {"none"}) or ["none"]
    for strategy in strategies:
      part = pd.concat([base, agg[(agg["layer_sharing"] == strategy) & (agg["share_repeats"] > 1)]])
      part = part.sort_values("share_repeats")
      ax.errorbar(part["share_repeats"], part[f"{metric}_mean"], yerr=_errors(part, metric),
                  marker="o", capsize=3, label=str(strategy))
    _chance_line(ax, agg, metric)
    ax.set_xlabel("times each block runs (repeat count)")
    ax.set_ylabel(LABELS[metric])
    ax.set_xticks(sorted(agg["share_repeats"].unique()))
    ax.legend(fontsize=8)
  fig.suptitle("Layer sharing: repeat count")
  return fig


def plot_tokens(agg: pd.DataFrame, family: str = "num_layers") -> Figure:
  """Validation loss against training tokens, one line per depth."""
  fig, (ax,) = figure(1)
  for value, part in agg.groupby(family, sort=True):
    part = part.sort_values("tokens_seen")
    ax.errorbar(part["tokens_seen"], part["val_loss_mean"], yerr=_errors(part, "val_loss"),
                marker="o", capsize=3, label=f"{family}={value}")
  ax.set_xscale("log")
  ax.set_xlabel("training tokens")
  ax.set_ylabel(LABELS["val_loss"])
  ax.legend(fontsize=8)
  fig.suptitle("Loss vs tokens by depth")
  return fig


def plot_headline(agg: pd.DataFrame, plot: str, headline: str, *, title: str = "") -> Figure:
  """The plot a sweep file names (PLOT in analysis/study.py) of the loss against its HEADLINE."""
  if plot == "depth":
    return plot_depth(agg, headline)
  if plot == "repeats":
    return plot_repeats(agg)
  if plot == "tokens":
    return plot_tokens(agg)
  if plot == "bars":
    return plot_bars(agg, headline, title=title)
  raise ValueError(f"unknown plot {plot!r}")


def plot_curves(curves: pd.DataFrame, *, max_runs: int = 24) -> Figure:
  """Training loss (lines) and validation loss (dots) against step; seeds of a config share a
  colour."""
  fig, (ax,) = figure(1, width=7.0, height=4.2)
  key = "run_dir" if "run_dir" in curves else "name"  # names repeat across sweeps; dirs do not
  runs = curves.drop_duplicates(key)[[key, "name"]].sort_values("name").head(max_runs)
  configs = sorted({config_id(n) for n in runs["name"]})
  colours = {c: f"C{i % 10}" for i, c in enumerate(configs)}
  labelled = set()
  for run_key, name in zip(runs[key], runs["name"]):
    run = curves[curves[key] == run_key]
    config = config_id(name)
    label = None if config in labelled else config
    labelled.add(config)
    if "loss" in run and run["loss"].notna().any():
      train = run[run["loss"].notna()]
      ax.plot(train["step"], train["loss"], color=colours[config], lw=0.8, alpha=0.7, label=label)
      label = None
    if "val_loss" in run and run["val_loss"].notna().any():
      val = run[run["val_loss"].notna()]
      ax.plot(val["step"], val["val_loss"], "o", color=colours[config], ms=3, label=label)
  ax.set_xlabel("step")
  ax.set_ylabel("loss (nats/token): train lines, validation dots")
  if configs:
    ax.legend(fontsize=6, ncol=max(1, math.ceil(len(configs) / 12)))
  fig.suptitle("Loss curves")
  return fig


def plot_fits(runs: pd.DataFrame, fits_table: pd.DataFrame, x: str, y: str = "val_loss") -> Figure:
  """Runs (dots) and each family's fitted power law (line), log x."""
  fig, (ax,) = figure(1, width=6.0, height=4.2)
  for i, row in enumerate(fits_table.itertuples()):
    colour = f"C{i % 10}"
    mask = np.ones(len(runs), dtype=bool)
    for column in fits_table.columns:
      if column in runs.columns and column not in (x, y) and column in stats.KEY_COLUMNS:
        value = getattr(row, column)
        mask &= (runs[column] == value).to_numpy() | (pd.isna(value) & runs[column].isna()).to_numpy()
    part = runs[mask]
    ax.plot(part[x], part[y], "o", color=colour, ms=4)
    if row.fit is not None:
      grid = np.geomspace(part[x].min(), part[x].max(), 50)
      ax.plot(grid, row.fit.predict(grid), "-", color=colour,
              label=f"{row.family}: alpha={row.fit.alpha:.2f}")
  ax.set_xscale("log")
  ax.set_xlabel({"params": "parameters N", "train_flops": "training compute C (FLOPs)"}.get(x, x))
  ax.set_ylabel(LABELS.get(y, y))
  if len(fits_table):
    ax.legend(fontsize=6)
  x_name = {"params": "N", "train_flops": "C"}.get(x, x)
  fig.suptitle(f"{LABELS.get(y, y).split(' (')[0]}: L = E + A {x_name}^-alpha")
  return fig
