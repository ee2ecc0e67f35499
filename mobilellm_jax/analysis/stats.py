"""Seed aggregation, bootstrap intervals, and whether a gap between two configs beats seed noise.

The rule used everywhere ("outside the seed spread"): configs a and b differ if
    |mean_a - mean_b| > sqrt(std_a^2 + std_b^2)
i.e. the gap is larger than two single runs of the same pair would typically differ by from seed
alone. std is each config's standard deviation over seeds (ddof=1); a config with one seed borrows
the sweep's pooled within-config std when some other config has several seeds. With no estimate
of seed noise at all, the answer is None (inconclusive), never a guess.
"""

import dataclasses
import math

import numpy as np
import pandas as pd

from mobilellm_jax.analysis.results import config_id

# Columns that define a run's model and budget; any of them present in a frame (seed excluded)
# groups its runs into configs.
KEY_COLUMNS = ("group", "label", "preset", "num_layers", "effective_depth", "dim", "num_heads",
               "num_kv_heads", "ffn_type", "ffn_dim", "tie_embeddings", "layer_sharing",
               "share_repeats", "params", "non_embedding_params", "vocab_size", "seq_len",
               "batch_size", "steps", "tokens_seen", "num_tokens", "peak_lr", "init_scheme",
               "dataset", "param_budget", "paper_step")
METRICS = ("val_loss", "zeroshot_avg")
LOWER_IS_BETTER = {"val_loss": True, "val_perplexity": True, "final_train_loss": True}


def lower_is_better(metric: str) -> bool:
  return LOWER_IS_BETTER.get(metric, not metric.startswith("zeroshot"))


def config_columns(runs: pd.DataFrame) -> list[str]:
  return [c for c in KEY_COLUMNS if c in runs.columns]


def _finite(values) -> np.ndarray:
  values = np.asarray(values, dtype=np.float64)
  return values[np.isfinite(values)]


def bootstrap_ci(values, *, level: float = 0.95, num_samples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean; (nan, nan) under two values. Seeded."""
  values = _finite(values)
  if len(values) < 2:
    return math.nan, math.nan
  rng = np.random.default_rng(seed)
  means = values[rng.integers(0, len(values), size=(num_samples, len(values)))].mean(axis=1)
  low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
  return float(low), float(high)


def _std(values: np.ndarray) -> float:
  return float(values.std(ddof=1)) if len(values) >= 2 else math.nan


def aggregate_seeds(runs: pd.DataFrame, metrics=METRICS, *, level: float = 0.95,
                    seed: int = 0) -> pd.DataFrame:
  """One row per config: its key columns, n_seeds, and <metric>_mean/_std/_ci_low/_ci_high."""
  keys = config_columns(runs)
  metrics = [m for m in metrics if m in runs.columns and runs[m].notna().any()]
  rows = []
  for key_values, group in runs.groupby(keys, dropna=False, sort=False):
    row = dict(zip(keys, key_values if isinstance(key_values, tuple) else (key_values,)))
    row["config"] = config_id(str(group["name"].iloc[0])) if "name" in group else ""
    row["n_seeds"] = len(group)
    row["seeds"] = sorted(group["seed"].tolist()) if "seed" in group else []
    row["_rows"] = list(group.index)  # the runs behind this row, for per-seed comparisons
    for metric in metrics:
      values = _finite(group[metric])
      row[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
      row[f"{metric}_std"] = _std(values)
      row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = bootstrap_ci(values, level=level,
                                                                       seed=seed)
    rows.append(row)
  return pd.DataFrame(rows)


def pooled_std(runs: pd.DataFrame, metric: str = "val_loss") -> float:
  """Seed noise pooled over every config with >= 2 seeds (nan when none has)."""
  keys = config_columns(runs)
  squares, dof = 0.0, 0
  for _, group in runs.groupby(keys, dropna=False, sort=False):
    values = _finite(group[metric])
    if len(values) >= 2:
      squares += float(((values - values.mean()) ** 2).sum())
      dof += len(values) - 1
  return math.sqrt(squares / dof) if dof else math.nan


@dataclasses.dataclass(frozen=True)
class Gap:
  """mean_a - mean_b of one metric, with the seed spread it is judged against."""
  metric: str
  mean_a: float
  mean_b: float
  n_a: int
  n_b: int
  spread: float  # sqrt(std_a^2 + std_b^2); nan when seed noise is unknown
  ci_low: float  # bootstrap interval of the difference of means (nan under 2 seeds each)
  ci_high: float
  pooled: bool  # a one-seed side borrowed the sweep's pooled std

  @property
  def diff(self) -> float:
    return self.mean_a - self.mean_b

  @property
  def outside_spread(self) -> bool | None:
    """True: the gap beats seed noise; False: inside it; None: noise unknown (inconclusive)."""
    if not math.isfinite(self.spread):
      return None
    return abs(self.diff) > self.spread

  def size(self, unit: str = "") -> str:
    """'0.031 ± 0.012 nats': the size of the gap (not its sign) and the seed spread."""
    spread = f" ± {self.spread:.2g}" if math.isfinite(self.spread) else ""
    return f"{abs(self.diff):.3g}{spread}{' ' + unit if unit else ''}"

  @property
  def judgement(self) -> str:
    text = {True: "gap outside the seed spread", False: "gap inside the seed spread",
            None: "seed spread unknown: one seed per config, rerun with more seeds"}
    pooled = " (pooled over the sweep)" if self.pooled and self.outside_spread is not None else ""
    return text[self.outside_spread] + pooled

  def describe(self, unit: str = "") -> str:
    return f"{self.size(unit)} ({self.judgement})"


def gap(values_a, values_b, metric: str = "val_loss", *, noise_std: float = math.nan,
        level: float = 0.95, seed: int = 0) -> Gap:
  """Compare two configs' per-seed values; `noise_std` stands in for a one-seed side's std."""
  a, b = _finite(values_a), _finite(values_b)
  if not len(a) or not len(b):
    raise ValueError(f"no finite {metric} values to compare ({len(a)} vs {len(b)} runs)")
  std_a, std_b = _std(a), _std(b)
  pooled = len(a) < 2 or len(b) < 2
  std_a = std_a if len(a) >= 2 else noise_std
  std_b = std_b if len(b) >= 2 else noise_std
  spread = math.sqrt(std_a ** 2 + std_b ** 2)
  ci_low = ci_high = math.nan
  if len(a) >= 2 and len(b) >= 2:
    rng = np.random.default_rng(seed)
    diffs = (a[rng.integers(0, len(a), (2000, len(a)))].mean(1) -
             b[rng.integers(0, len(b), (2000, len(b)))].mean(1))
    ci_low, ci_high = (float(q) for q in np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2]))
  return Gap(metric, float(a.mean()), float(b.mean()), len(a), len(b), spread, ci_low, ci_high,
             pooled)


def _select(runs: pd.DataFrame, where) -> pd.DataFrame:
  if isinstance(where, dict):
    mask = np.ones(len(runs), dtype=bool)
    for column, value in where.items():
      mask &= (runs[column] == value).to_numpy()
    return runs[mask]
  return runs[where]


def config_gap(runs: pd.DataFrame, agg: pd.DataFrame, a, b, metric: str = "val_loss") -> Gap:
  """Gap between rows a and b (index labels) of aggregate_seeds(runs)."""
  return gap(runs.loc[agg.loc[a, "_rows"], metric], runs.loc[agg.loc[b, "_rows"], metric],
             metric, noise_std=pooled_std(runs, metric))


def compare(runs: pd.DataFrame, a, b, metric: str = "val_loss") -> Gap:
  """Gap between the runs matching `a` and those matching `b` (dicts column -> value, or
  boolean masks); one-seed sides use the sweep's pooled seed noise."""
  return gap(_select(runs, a)[metric], _select(runs, b)[metric], metric,
             noise_std=pooled_std(runs, metric))


def rank_configs(runs: pd.DataFrame, metric: str = "val_loss") -> pd.DataFrame:
  """Configs best first, with gap_to_best and within_spread_of_best (None when unknown): the
  launcher's end-of-sweep table."""
  table = aggregate_seeds(runs, (metric,))
  table = table.sort_values(f"{metric}_mean", ascending=lower_is_better(metric),
                            ignore_index=True)
  noise = pooled_std(runs, metric)
  best = table.iloc[0]
  stds = table[f"{metric}_std"].where(table["n_seeds"] >= 2, noise)
  spread = np.sqrt(stds ** 2 + stds.iloc[0] ** 2)
  table["gap_to_best"] = table[f"{metric}_mean"] - best[f"{metric}_mean"]
  table["within_spread_of_best"] = [None if not math.isfinite(s) else bool(abs(g) <= s)
                                    for g, s in zip(table["gap_to_best"], spread)]
  return table


def format_count(value: float) -> str:
  """2_134_000 -> '2.1M', 124_635_456 -> '125M', 3.2e9 -> '3.2B'."""
  for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
    if abs(value) >= scale:
      scaled = value / scale
      return f"{scaled:.2g}{suffix}" if scaled < 10 else f"{scaled:.0f}{suffix}"
  return f"{value:.0f}"


def param_budgets(params: pd.Series, tolerance: float = 0.3,
                  targets: pd.Series | None = None) -> pd.Series:
  """Label each run with its parameter budget ('2.1M'). `targets` (the launcher's
  tracking.param_budget) names it when given; otherwise parameter-matched counts, which land
  within a few % of each other (widths move in steps), are clustered: counts within `tolerance`
  of a cluster's smallest member share the cluster's median."""
  if targets is not None and targets.notna().all():
    return targets.map(lambda t: format_count(float(t))).astype(object)
  order = params.sort_values()
  clusters, start, members = {}, None, []
  for index, value in order.items():
    if start is None or value > start * (1 + tolerance):
      clusters.update({i: members for i in members})
      start, members = value, []
    members.append(index)
  clusters.update({i: members for i in members})
  return pd.Series({i: format_count(float(params[m].median())) for i, m in clusters.items()},
                   dtype=object).reindex(params.index)


def budgets_of(frame: pd.DataFrame) -> pd.Series:
  """param_budgets of a runs frame or an aggregate, using param_budget when it has one."""
  return param_budgets(frame["params"], targets=frame.get("param_budget"))
