"""Scaling-law fits: L(x) = E + A * x^-alpha (x = parameters N or training compute C).

Fitted in the parametrization E + exp(log_a - alpha * log(x / x0)), x0 the geometric mean of x,
so the three parameters are on comparable scales. The start comes from variable projection (for a
fixed alpha, E and A are a linear least-squares problem), so no hand-tuned initial guess is needed.
Intervals come from the fit's covariance (t quantiles) or, with `num_bootstrap`, from refitting
resampled points.
"""

import dataclasses
import math

import numpy as np
import pandas as pd

from mobilellm_jax.analysis import stats

_ALPHA_GRID = np.geomspace(0.01, 4.0, 400)


def _model(log_x, e, log_a, alpha):
  return e + np.exp(log_a - alpha * log_x)


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
  """Fitted E, A, alpha with intervals at `level`; `x_name` says what x is ('N', 'C')."""
  e: float
  a: float
  alpha: float
  intervals: dict  # name -> (low, high)
  num_points: int
  rmse: float
  level: float
  x_name: str = "N"
  irreducible: bool = True  # False: E fixed at 0 (pure power law)

  def predict(self, x) -> np.ndarray:
    return self.e + self.a * np.asarray(x, dtype=np.float64) ** -self.alpha

  def __str__(self) -> str:
    def interval(name, fmt):
      low, high = self.intervals.get(name, (math.nan, math.nan))
      return f" [{low:{fmt}}, {high:{fmt}}]" if math.isfinite(low) else ""
    e = f"{self.e:.3f}{interval('e', '.3f')} + " if self.irreducible else ""
    return (f"L = {e}{self.a:.3g}{interval('a', '.3g')} * {self.x_name}^-"
            f"{self.alpha:.3f}{interval('alpha', '.3f')}")

  def as_row(self) -> dict:
    row = dict(E=self.e, A=self.a, alpha=self.alpha, points=self.num_points, rmse=self.rmse)
    for name, (low, high) in self.intervals.items():
      label = {"e": "E", "a": "A"}.get(name, name)
      row[f"{label}_low"], row[f"{label}_high"] = low, high
    return row


def _projected_start(log_x, y):
  """(E, log A, alpha) minimizing the squared error over a grid of alpha."""
  best = None
  for alpha in _ALPHA_GRID:
    design = np.stack([np.ones_like(log_x), np.exp(-alpha * log_x)], axis=1)
    (e, a), *_ = np.linalg.lstsq(design, y, rcond=None)
    if a <= 0:
      continue
    rss = float(((design @ np.array([e, a]) - y) ** 2).sum())
    if best is None or rss < best[0]:
      best = (rss, e, math.log(a), alpha)
  if best is None:
    raise ValueError("the loss does not fall as x grows, so no power law L = E + A x^-alpha "
                     "(A > 0) fits; check that the runs differ in x and finished training")
  return best[1:]


def _fit_once(log_x, y, irreducible):
  """(params, covariance) in the (E, log_a, alpha) parametrization; E = 0 when not irreducible."""
  from scipy import optimize  # pylint: disable=import-outside-toplevel  (slow import)
  if not irreducible:
    # log y = log_a - alpha log x: ordinary least squares.
    design = np.stack([np.ones_like(log_x), -log_x], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.log(y), rcond=None)
    residual = np.log(y) - design @ coef
    dof = max(len(y) - 2, 1)
    cov = np.linalg.pinv(design.T @ design) * float(residual @ residual) / dof
    full = np.zeros((3, 3))
    full[1:, 1:] = cov
    return np.array([0.0, coef[0], coef[1]]), full
  start = _projected_start(log_x, y)
  try:
    params, cov = optimize.curve_fit(_model, log_x, y, p0=start, maxfev=20000)
  except RuntimeError:
    # Points on a straight line in log x never bend toward a floor: E runs off to -inf.
    raise ValueError("no bend toward an irreducible loss in these points (they lie on a line "
                     "in log x), so E + A x^-alpha is not identified; add larger budgets") from None
  return params, cov


def fit_power_law(x, y, *, irreducible: bool = True, level: float = 0.95, num_bootstrap: int = 0,
                  seed: int = 0, x_name: str = "N") -> PowerLawFit:
  """Fit L = E + A x^-alpha to points (x > 0); repeated x (seeds) are fine and help."""
  from scipy import stats as scipy_stats  # pylint: disable=import-outside-toplevel
  x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
  keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
  x, y = x[keep], y[keep]
  needed = 3 if irreducible else 2
  if len(np.unique(x)) < needed:
    raise ValueError(f"a power law {'with' if irreducible else 'without'} an irreducible term "
                     f"needs >= {needed} distinct {x_name} values, got {len(np.unique(x))}; "
                     f"add budgets to the sweep")
  x0 = math.exp(float(np.log(x).mean()))
  log_x = np.log(x / x0)
  params, cov = _fit_once(log_x, y, irreducible)
  e, log_a, alpha = (float(p) for p in params)
  rmse = float(np.sqrt(np.mean((_model(log_x, *params) - y) ** 2)))
  # A in x's own units: A = exp(log_a) * x0^alpha.
  log_a_raw = log_a + alpha * math.log(x0)
  if num_bootstrap:
    intervals = _bootstrap(log_x, y, x0, irreducible, level, num_bootstrap, seed)
  else:
    dof = len(y) - (3 if irreducible else 2)
    t = float(scipy_stats.t.ppf((1 + level) / 2, dof)) if dof > 0 else math.inf
    var = np.diag(cov)
    var_log_a_raw = var[1] + math.log(x0) ** 2 * var[2] + 2 * math.log(x0) * cov[1, 2]
    half = lambda v: t * math.sqrt(v) if np.isfinite(v) and v >= 0 else math.inf
    intervals = dict(alpha=(alpha - half(var[2]), alpha + half(var[2])),
                     a=(math.exp(log_a_raw - half(var_log_a_raw)),
                        math.exp(min(log_a_raw + half(var_log_a_raw), 700.0))))
    if irreducible:
      intervals["e"] = (e - half(var[0]), e + half(var[0]))
  return PowerLawFit(e, math.exp(min(log_a_raw, 700.0)), alpha, intervals, len(y), rmse, level,
                     x_name, irreducible)


def _bootstrap(log_x, y, x0, irreducible, level, num_bootstrap, seed):
  rng = np.random.default_rng(seed)
  samples = []
  for _ in range(num_bootstrap):
    index = rng.integers(0, len(y), len(y))
    needed = 3 if irreducible else 2
    if len(np.unique(log_x[index])) < needed:
      continue
    try:
      (e, log_a, alpha), _ = _fit_once(log_x[index], y[index], irreducible)
    except (RuntimeError, ValueError):  # a resample with no decreasing power law
      continue
    samples.append((e, log_a + alpha * math.log(x0), alpha))
  samples = np.array(samples)
  q = [(1 - level) / 2, (1 + level) / 2]
  e_low, e_high = np.quantile(samples[:, 0], q)
  a_low, a_high = np.exp(np.minimum(np.quantile(samples[:, 1], q), 700.0))
  alpha_low, alpha_high = np.quantile(samples[:, 2], q)
  intervals = dict(alpha=(float(alpha_low), float(alpha_high)), a=(float(a_low), float(a_high)))
  if irreducible:
    intervals["e"] = (float(e_low), float(e_high))
  return intervals


FAMILY_COLUMNS = {
    # L(N): models of one recipe at one token budget, differing in size.
    "params": ("group", "ffn_type", "tie_embeddings", "layer_sharing", "share_repeats",
               "tokens_seen"),
    # L(C): one model trained for different numbers of tokens.
    "train_flops": ("group", "num_layers", "dim", "ffn_type", "tie_embeddings", "layer_sharing",
                    "share_repeats", "params"),
}
X_NAMES = {"params": "N", "non_embedding_params": "N", "train_flops": "C", "tokens_seen": "D"}


def family_name(keys: dict, varying=None) -> str:
  """A short readable name from a family's key columns (only those in `varying`, if given)."""
  short = {"num_layers": "L", "dim": "d", "params": "N", "tokens_seen": "D"}
  parts = []
  for column, value in keys.items():
    if varying is not None and column not in varying:
      continue
    if column in ("params", "tokens_seen"):
      value = stats.format_count(float(value))
    parts.append(f"{short.get(column, column)}={value}")
  return ", ".join(parts) or "all runs"


def fit_families(runs: pd.DataFrame, x: str = "params", y: str = "val_loss", *,
                 family_columns=None, irreducible: bool = True, level: float = 0.95,
                 min_span: float = 2.0) -> pd.DataFrame:
  """One power-law fit per family of runs (default families: FAMILY_COLUMNS[x]). Families that
  cannot be fitted (too few distinct x, x spanning less than `min_span` times, loss not falling)
  get a row whose `error` says why, instead of stopping the others."""
  columns = [c for c in (family_columns or FAMILY_COLUMNS.get(x, ("group",))) if c in runs]
  varying = [c for c in columns if runs[c].nunique(dropna=False) > 1]
  rows = []
  for key_values, group in runs.groupby(columns, dropna=False, sort=True):
    keys = dict(zip(columns, key_values if isinstance(key_values, tuple) else (key_values,)))
    row = dict(family=family_name(keys, varying), **keys, x=x, y=y, runs=len(group),
               distinct_x=int(group[x].nunique()))
    span = float(group[x].max() / group[x].min()) if group[x].min() > 0 else math.inf
    if span < min_span:
      rows.append(dict(row, fit=None, error=f"{x} spans only {span:.2f}x (needs >= {min_span}x "
                                             f"for a power law)"))
      continue
    try:
      fit = fit_power_law(group[x], group[y], irreducible=irreducible, level=level,
                          x_name=X_NAMES.get(x, x))
      row.update(fit.as_row(), fit=fit, error="")
    except (ValueError, RuntimeError) as err:
      row.update(fit=None, error=str(err))
    rows.append(row)
  return pd.DataFrame(rows)
