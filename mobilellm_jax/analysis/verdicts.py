"""Verdicts: the paper's claims checked against a sweep's runs, written out from the numbers.

Nothing is assumed: who won, by how much, whether the gap beats seed noise (stats.Gap) and whether
that matches the paper's direction (derived from paper.py's tables) are all computed. A gap inside
the seed spread, or with unknown spread, is reported as inconclusive.
"""

import dataclasses
import math

import numpy as np
import pandas as pd

from mobilellm_jax.analysis import fits, paper, stats, study, tables

UNITS = tables.UNITS
NAMES = {"val_loss": "validation loss", "zeroshot_avg": "zero-shot average"}


@dataclasses.dataclass(frozen=True)
class Verdict:
  """One finding. status: agrees / disagrees (with the paper), inconclusive, or note (no paper
  counterpart). winner/reference/margin fill the "who wins, by how much" table."""
  text: str
  status: str
  setting: str = ""
  winner: str = ""
  reference: str = ""
  margin: str = ""

  def __str__(self) -> str:
    return self.text


def _status(gap: stats.Gap, agrees: bool | None) -> str:
  if gap.outside_spread is not True:
    return "inconclusive"
  return "note" if agrees is None else ("agrees" if agrees else "disagrees")


def _tag(status: str) -> str:
  return {"agrees": "agrees with the paper", "disagrees": "disagrees with the paper",
          "inconclusive": "inconclusive", "note": "no paper counterpart"}[status]


def _best(agg: pd.DataFrame, metric: str):
  means = agg[f"{metric}_mean"]
  return means.idxmin() if stats.lower_is_better(metric) else means.idxmax()


def _improvement(gap: stats.Gap) -> float:
  """How much better a is than b (positive = better), whatever the metric's direction."""
  return -gap.diff if stats.lower_is_better(gap.metric) else gap.diff


def _contest(runs: pd.DataFrame, agg: pd.DataFrame, a, b, metric: str, names: tuple[str, str]):
  """Rows a vs b of `agg`: (gap, whether a won, (winner's name, loser's name))."""
  gap = stats.config_gap(runs, agg, a, b, metric)
  a_won = _improvement(gap) > 0
  return gap, a_won, (names if a_won else names[::-1])


def _outcome(a: str, a_won: bool, b: str, gap: stats.Gap) -> str:
  """'a beat b on <metric> by <gap>' (or 'lost to')."""
  return (f"{a} {'beat' if a_won else 'lost to'} {b} on {NAMES[gap.metric]} by "
          f"{gap.describe(UNITS[gap.metric])}")


def _verdict(text: str, gap: stats.Gap, agrees: bool | None, *, setting: str,
             pair: tuple[str, str]) -> Verdict:
  """A finding about one gap; pair = (winner, loser) for the who-wins table."""
  status = _status(gap, agrees)
  return Verdict(f"{text} [{_tag(status)}]", status, setting, str(pair[0]), str(pair[1]),
                 gap.size(UNITS.get(gap.metric, "")))


def zeroshot_chance(runs: pd.DataFrame) -> Verdict | None:
  """Whether the zero-shot averages carry signal: the best config against chance, with the
  evaluation's own binomial standard error (questions per task) as the yardstick."""
  if "zeroshot_avg" not in runs or runs["zeroshot_avg"].isna().all():
    return None
  agg = stats.aggregate_seeds(runs, ("zeroshot_avg",))
  best = agg.loc[_best(agg, "zeroshot_avg")]
  chance = float(runs["zeroshot_chance"].mean()) if "zeroshot_chance" in runs else math.nan
  counts = [float(runs[f"zeroshot_{t}_n"].mean()) for t in paper.TASKS if f"zeroshot_{t}_n" in runs]
  counts = [n for n in counts if math.isfinite(n) and n > 0]
  # SE of an unweighted average of task accuracies, at the worst case p = 0.5, in points.
  se = 100 * math.sqrt(sum(0.25 / n for n in counts)) / len(counts) if counts else math.nan
  if not (math.isfinite(chance) and math.isfinite(se)):
    return None
  above = best["zeroshot_avg_mean"] - chance
  if above > 2 * se:
    text = (f"zero-shot: the best config ({best['config']}) scores "
            f"{best['zeroshot_avg_mean']:.1f}%, {above:.1f} points above chance ({chance:.1f}%; "
            f"evaluation SE {se:.1f})")
  else:
    where = ("below chance: a bias of the answer scoring, not knowledge" if above < -2 * se
             else "within 2 SE of chance")
    scored = ("every scored config is" if agg["zeroshot_avg_mean"].notna().sum() > 1
              else "the scored config is")
    text = (f"zero-shot: {scored} {where} (best {best['zeroshot_avg_mean']:.1f}% vs chance "
            f"{chance:.1f}%, SE {se:.1f}): at this scale the zero-shot tasks carry no signal; "
            "judge by validation loss")
  return Verdict(text, "note")


def depth_vs_width(runs: pd.DataFrame) -> list[Verdict]:
  """Deeper vs wider at each parameter budget: best depth against the shallowest."""
  agg = stats.aggregate_seeds(runs)
  agg["_budget"] = stats.budgets_of(agg)
  paper_says_deeper = all(max(g, key=lambda r: r[2])[0] > min(g)[0]
                          for g in paper.DEPTH_VS_WIDTH.values())
  out = []
  for budget, part in agg.groupby("_budget", sort=False):
    if part["num_layers"].nunique() < 2:
      out.append(Verdict(f"only one depth at {budget} params: nothing to compare", "inconclusive"))
      continue
    for metric in tables.comparable_metrics(part):
      best, shallow = _best(part, metric), part["num_layers"].idxmin()
      deeper_won = best != shallow
      reference = shallow if deeper_won else _best(part.drop(index=best), metric)
      gap = stats.config_gap(runs, agg, best, reference, metric)
      b, r = agg.loc[best], agg.loc[reference]
      words = "deeper beat wider" if deeper_won else "wider beat deeper"
      if gap.outside_spread is not True:
        words = f"inconclusive: {words}"
      which = "shallowest" if deeper_won else "next best"
      plateau = [int(agg.loc[i, "num_layers"]) for i in part.index if i != best and
                 stats.config_gap(runs, agg, i, best, metric).outside_spread is False]
      flat = (f"; within the seed spread of the best: {', '.join(map(str, sorted(plateau)))} layers"
              if plateau else "")
      text = (f"{words} at {budget} params on {NAMES[metric]} by {gap.size(UNITS[metric])} "
              f"(best depth {b['num_layers']} vs {which} {r['num_layers']}; {gap.judgement}{flat})")
      out.append(_verdict(text, gap, deeper_won == paper_says_deeper, setting=f"{budget}, {metric}",
                          pair=(f"{b['num_layers']} layers (dim {b['dim']})",
                                f"{r['num_layers']} layers (dim {r['dim']})")))
  return out


def ablation_ladder(runs: pd.DataFrame) -> list[Verdict]:
  """Each ladder step against the one before, and the whole ladder, vs the paper's deltas."""
  agg = tables.order_ladder(stats.aggregate_seeds(runs))
  deltas = {size: paper.ladder_deltas(size) for size in ("125M", "350M")}
  labels = agg["label"].astype(str)
  index = list(agg.index)
  out = []
  for metric in tables.comparable_metrics(agg):
    for previous, current in zip(index, index[1:]):
      gap, won, pair = _contest(runs, agg, current, previous, metric,
                                (labels[current], labels[previous]))
      step = agg.loc[current, "step"]
      # The paper's direction counts only when both sizes agree on it.
      signs = {np.sign(deltas[size][step]) for size in deltas} if step else set()
      agrees = (np.sign(_improvement(gap)) in signs) if len(signs) == 1 else None
      paper_text = (f"paper {deltas['125M'][step]:+.1f} (125M), {deltas['350M'][step]:+.1f} "
                    "(350M) points" if step else "no paper step matches this label")
      text = (f"'{labels[current]}' {'better' if won else 'worse'} than '{labels[previous]}' on "
              f"{NAMES[metric]} by {gap.describe(UNITS[metric])}; {paper_text}")
      out.append(_verdict(text, gap, agrees, setting=f"{labels[current]}, {metric}", pair=pair))
    if len(index) > 2:
      first, last = index[0], index[-1]
      gap, won, pair = _contest(runs, agg, last, first, metric, (labels[last], labels[first]))
      whole = paper.ladder_result("125M").margin
      outcome = _outcome(f"'{labels[last]}'", won, f"'{labels[first]}'", gap)
      text = f"the whole ladder: {outcome}; paper {whole:+.1f} points (125M)"
      out.append(_verdict(text, gap, won == (whole > 0), setting=f"whole ladder, {metric}",
                          pair=pair))
  return out


def layer_sharing(runs: pd.DataFrame) -> list[Verdict]:
  """Each strategy against no sharing, and which strategy wins, vs the paper (350M)."""
  agg = stats.aggregate_seeds(runs)
  reported = paper.LAYER_SHARING["350M"]
  none = agg.index[agg["layer_sharing"] == "none"]
  out = []
  for metric in tables.comparable_metrics(agg):
    for i in (agg.index[agg["layer_sharing"] != "none"] if len(none) else []):
      strategy = agg.loc[i, "layer_sharing"]
      name = f"{strategy} x{agg.loc[i, 'share_repeats']}"
      gap, won, pair = _contest(runs, agg, i, none[0], metric, (name, "none"))
      paper_gain = reported.get(strategy, math.nan) - reported["none"]
      agrees = won == (paper_gain > 0) if math.isfinite(paper_gain) else None
      text = (f"{_outcome(name, won, 'no sharing', gap)} at the same parameters "
              f"({agg.loc[i, 'effective_depth']} vs {agg.loc[none[0], 'effective_depth']} layers "
              f"run); paper 350M {paper_gain:+.1f} points")
      out.append(_verdict(text, gap, agrees, setting=f"{name} vs none, {metric}", pair=pair))
    shared = agg[agg["layer_sharing"] != "none"]
    if len(shared) >= 2:
      best = _best(shared, metric)
      runner = _best(shared.drop(index=best), metric)
      ours, second = agg.loc[best, "layer_sharing"], agg.loc[runner, "layer_sharing"]
      gap, _, pair = _contest(runs, agg, best, runner, metric, (ours, second))
      paper_best = max((s for s in reported if s != "none"), key=reported.get)
      agrees = (ours == paper_best) if {ours, second} <= set(reported) else None
      text = (f"best strategy on {NAMES[metric]}: {ours}, ahead of {second} by "
              f"{gap.describe(UNITS[metric])}; paper 350M best: {paper_best} "
              f"({reported[paper_best]:.1f})")
      out.append(_verdict(text, gap, agrees, setting=f"best strategy, {metric}", pair=pair))
  return out


def repeat_count(runs: pd.DataFrame) -> list[Verdict]:
  """Gain of each repeat count over 1x, and whether returns diminish, vs the paper."""
  agg = stats.aggregate_seeds(runs).sort_values("share_repeats")
  if agg["share_repeats"].nunique() < 2:
    return [Verdict("repeat_count needs at least two repeat counts (1x and more)", "inconclusive")]
  base = agg["share_repeats"].idxmin()
  base_name = f"{agg.loc[base, 'share_repeats']}x"
  low, high = paper.REPEAT_COUNT_GAIN_2X
  out = []
  for metric in tables.comparable_metrics(agg):
    increments, previous = [], base
    for i in agg.index[agg["share_repeats"] > agg.loc[base, "share_repeats"]]:
      k = agg.loc[i, "share_repeats"]
      gap, won, pair = _contest(runs, agg, i, base, metric, (f"{k}x", base_name))
      increments.append((k, stats.config_gap(runs, agg, i, previous, metric)))
      previous = i
      paper_text = f"paper: +{low} to +{high} points" if k == 2 else "paper: diminishing returns"
      text = f"{_outcome(f'{k}x', won, base_name, gap)}; {paper_text}"
      out.append(_verdict(text, gap, won, setting=f"{k}x vs {base_name}, {metric}", pair=pair))
    if len(increments) >= 2:
      gains = [_improvement(g) for _, g in increments]
      diminishing = all(later < earlier for earlier, later in zip(gains, gains[1:]))
      beyond = [f"{k}x" for k, g in increments[1:]
                if g.outside_spread is True and _improvement(g) > 0]
      text = (f"returns on {NAMES[metric]}: each extra repeat gained "
              + ", ".join(f"{gain:+.3g} ({k}x)" for (k, _), gain in zip(increments, gains))
              + (" — diminishing" if diminishing else " — not diminishing")
              + (f"; gains beyond 2x outside the seed spread: {', '.join(beyond)}" if beyond
                 else "; no gain beyond 2x is outside the seed spread"))
      status = "agrees" if diminishing else ("disagrees" if beyond else "inconclusive")
      out.append(Verdict(f"{text} [{_tag(status)}]", status))
  return out


def embedding_sharing(runs: pd.DataFrame) -> list[Verdict]:
  """Tied vs untied at the same depth (cost of sharing) and tied + deeper (what the saving buys)."""
  agg = stats.aggregate_seeds(runs)
  agg["variant"] = tables.embedding_variant(agg)
  reported = {key: (params, acc) for key, _, params, acc in paper.EMBEDDING_SHARING}
  first = {v: agg.index[agg["variant"] == v][0] for v in ("untied", "tied", "tied_deeper")
           if (agg["variant"] == v).any()}
  out = []
  if "untied" in first and "tied" in first:
    untied, tied = agg.loc[first["untied"], "params"], agg.loc[first["tied"], "params"]
    paper_saved = 1 - reported["tied"][0] / reported["untied"][0]
    out.append(Verdict(f"sharing the embedding saves {1 - tied / untied:.1%} of parameters "
                       f"({stats.format_count(untied)} -> {stats.format_count(tied)}); paper "
                       f"{paper_saved:.1%} at 125M", "note"))
  for metric in tables.comparable_metrics(agg):
    for a, b in (("tied", "untied"), ("tied_deeper", "untied"), ("tied_deeper", "tied")):
      if a not in first or b not in first:
        continue
      gap, won, pair = _contest(runs, agg, first[a], first[b], metric, (a, b))
      paper_gain = reported[a][1] - reported[b][1]
      layers = {x: agg.loc[first[x], "num_layers"] for x in (a, b)}
      outcome = _outcome(f"{a} ({layers[a]} layers)", won, f"{b} ({layers[b]} layers)", gap)
      text = f"{outcome}; paper {paper_gain:+.1f} points"
      out.append(_verdict(text, gap, won == (paper_gain > 0), setting=f"{a} vs {b}, {metric}",
                          pair=pair))
  return out


def heads_kv(runs: pd.DataFrame) -> list[Verdict]:
  """Fewer KV heads at fixed query heads (the paper: about neutral), and the best head count."""
  agg = stats.aggregate_seeds(runs)
  out = []
  for metric in tables.comparable_metrics(agg):
    for heads, part in agg.groupby("num_heads"):
      if part["num_kv_heads"].nunique() < 2:
        continue
      most, fewest = part["num_kv_heads"].idxmax(), part["num_kv_heads"].idxmin()
      kv_most, kv_fewest = part.loc[most, "num_kv_heads"], part.loc[fewest, "num_kv_heads"]
      gap, won, pair = _contest(runs, agg, fewest, most, metric, (f"{kv_fewest} kv", f"{kv_most} kv"))
      # The paper's claim is neutrality: agreement means the gap is inside the seed spread.
      neutral = gap.outside_spread is False
      status = ("inconclusive" if gap.outside_spread is None
                else ("agrees" if neutral else "disagrees"))
      text = (f"{heads} query heads, KV heads {kv_most} -> {kv_fewest}: {NAMES[metric]} "
              f"{'better' if won else 'worse'} by {gap.describe(UNITS[metric])}; "
              f"{'about neutral' if neutral else 'not neutral'}; paper: 16 -> 4 KV heads about "
              f"neutral at 125M [{_tag(status)}]")
      out.append(Verdict(text, status, f"{heads} heads, kv reduction, {metric}", *pair,
                         gap.size(UNITS[metric])))
    if agg["num_heads"].nunique() >= 2:
      best = _best(agg, metric)
      runner = _best(agg[agg["num_heads"] != agg.loc[best, "num_heads"]], metric)
      names = tuple(f"{agg.loc[i, 'num_heads']} heads" for i in (best, runner))
      gap, _, pair = _contest(runs, agg, best, runner, metric, names)
      text = (f"best head count on {NAMES[metric]}: {names[0]} (kv {agg.loc[best, 'num_kv_heads']})"
              f", ahead of {names[1]} by {gap.describe(UNITS[metric])}; paper: {paper.HEADS_NOTE}")
      out.append(_verdict(text, gap, None, setting=f"best head count, {metric}", pair=pair))
  return out


def depth_vs_tokens(runs: pd.DataFrame) -> list[Verdict]:
  """At each token budget, the best depth; whether depth's advantage changes with tokens; and
  L(C) per depth."""
  agg = stats.aggregate_seeds(runs)
  out, advantages = [], []
  for budget, part in agg.groupby("tokens_seen", sort=True):
    if part["num_layers"].nunique() < 2:
      continue
    best, shallow = _best(part, "val_loss"), part["num_layers"].idxmin()
    deeper_won = best != shallow
    reference = shallow if deeper_won else _best(part.drop(index=best), "val_loss")
    names = tuple(f"{agg.loc[i, 'num_layers']} layers" for i in (best, reference))
    gap, _, pair = _contest(runs, agg, best, reference, "val_loss", names)
    tokens = stats.format_count(budget)
    words = "deeper beat wider" if deeper_won else "wider beat deeper"
    text = (f"{'' if gap.outside_spread else 'inconclusive: '}{words} at {tokens} tokens by "
            f"{gap.size('nats')} (best depth {agg.loc[best, 'num_layers']} vs "
            f"{'shallowest' if deeper_won else 'next best'} {agg.loc[reference, 'num_layers']}; "
            f"{gap.judgement})")
    out.append(_verdict(text, gap, deeper_won, setting=f"{tokens} tokens", pair=pair))
    deepest = part["num_layers"].idxmax()
    advantage = part.loc[shallow, "val_loss_mean"] - part.loc[deepest, "val_loss_mean"]
    advantages.append((tokens, float(advantage)))
  if len(advantages) >= 2:
    # The first and last advantages each come from two configs: four configs' seed noise.
    noise = 2 * stats.pooled_std(runs, "val_loss")
    change = advantages[-1][1] - advantages[0][1]
    trend = ("stays about constant (within seed noise)"
             if math.isfinite(noise) and abs(change) <= noise
             else ("grows" if change > 0 else "shrinks"))
    out.append(Verdict("deepest minus shallowest loss advantage by budget: " + ", ".join(
        f"{a:+.3f} nats at {t}" for t, a in advantages) + f": it {trend} with tokens", "note"))
  law = best_depth_law(agg)
  if law is not None:
    out.append(Verdict(law, "note"))
  return out + scaling(fits.fit_families(runs, "train_flops"))


PAPER_TOKENS_PER_PARAM = 2_000  # 0.25T tokens at 125M
PAPER_BEST_125M = (30, 512)  # layers, dim of the paper's best 125M shape


def interpolated_best_depths(agg: pd.DataFrame) -> list[tuple[float, float, float]]:
  """(tokens per parameter, best depth, its dim / layers) per token budget: the vertex of a
  parabola in log2(depth) through the best grid depth and its two neighbours (the best grid depth
  itself where the three do not curve upwards), its width interpolated on the grid in log2 depth."""
  points = []
  for budget, part in agg.groupby("tokens_seen", sort=True):
    part = part.sort_values("num_layers")
    if part["num_layers"].nunique() < 3:
      continue
    x = np.log2(part["num_layers"].to_numpy(float))
    y = part["val_loss_mean"].to_numpy(float)
    i = int(np.clip(np.argmin(y), 1, len(x) - 2))  # the best and its neighbours (or the edge's 3)
    a, b, _ = np.polyfit(x[i - 1:i + 2], y[i - 1:i + 2], 2)
    vertex = -b / (2 * a) if a > 0 else x[np.argmin(y)]
    vertex = float(np.clip(vertex, x[0], x[-1]))
    dim = float(2 ** np.interp(vertex, x, np.log2(part["dim"].to_numpy(float))))
    points.append((float(budget / part["params"].mean()), 2 ** vertex, dim / 2 ** vertex))
  return points


def _loglog_fit(xs, ys, at: float):
  """Slope of log y on log x with its 95% interval, and y at `at` with the 95% interval of the
  fitted mean there (Student t, n - 2 degrees of freedom)."""
  from scipy import stats as scipy_stats  # pylint: disable=import-outside-toplevel
  lx, ly = np.log(xs), np.log(ys)
  n = len(lx)
  slope, intercept = np.polyfit(lx, ly, 1)
  residual = ly - (intercept + slope * lx)
  s = math.sqrt(float(residual @ residual) / (n - 2))
  sxx = float(((lx - lx.mean()) ** 2).sum())
  t = float(scipy_stats.t.ppf(0.975, n - 2))
  half_slope = t * s / math.sqrt(sxx)
  x0 = math.log(at)
  half_at = t * s * math.sqrt(1 / n + (x0 - lx.mean()) ** 2 / sxx)
  centre = intercept + slope * x0
  return (slope, slope - half_slope, slope + half_slope,
          math.exp(centre), math.exp(centre - half_at), math.exp(centre + half_at))


def best_depth_law(agg: pd.DataFrame) -> str | None:
  """The interpolated best depth (and aspect ratio) against tokens per parameter, a power law
  fitted through them with its interval, and where it points at the paper's tokens per parameter;
  None with fewer than three budgets."""
  points = interpolated_best_depths(agg)
  if len(points) < 3:
    return None
  tpp, depth, aspect = (np.array(column) for column in zip(*points))
  d_slope, d_lo, d_hi, d_at, d_at_lo, d_at_hi = _loglog_fit(tpp, depth, PAPER_TOKENS_PER_PARAM)
  a_slope, a_lo, a_hi, a_at, a_at_lo, a_at_hi = _loglog_fit(tpp, aspect, PAPER_TOKENS_PER_PARAM)
  layers, dim = PAPER_BEST_125M
  listed = ", ".join(f"{d:.1f} layers (dim/layers {a:.0f}) at {t:.2g}" for t, d, a in points)
  return (f"interpolated best depth by tokens/param: {listed}; best depth ~ (tokens/param)^"
          f"{d_slope:.2f} [{d_lo:.2f}, {d_hi:.2f}], dim/layers ~ (tokens/param)^{a_slope:.2f} "
          f"[{a_lo:.2f}, {a_hi:.2f}] (95%, {len(points)} budgets); extrapolated to the paper's "
          f"{PAPER_TOKENS_PER_PARAM:,} tokens/param at this size: {d_at:.0f} layers "
          f"[{d_at_lo:.0f}, {d_at_hi:.0f}], dim/layers {a_at:.0f} [{a_at_lo:.0f}, {a_at_hi:.0f}] "
          f"(the paper's best 125M shape: {layers} layers, dim/layers {dim / layers:.0f}; "
          "an extrapolation over three decades, not a measurement)")


def scaling(fitted: pd.DataFrame) -> list[Verdict]:
  """Each family's fitted exponent, and whether two families' exponents differ."""
  out = []
  good = fitted[fitted["fit"].notna()] if len(fitted) else fitted
  for row in fitted.itertuples():
    if row.fit is not None:
      out.append(Verdict(f"{row.family}: {row.fit} ({int(row.points)} runs, "
                         f"rmse {row.fit.rmse:.3g})", "note"))
  failed = fitted[fitted["fit"].isna()] if len(fitted) else fitted
  if len(failed):
    # One line: most families of a mixed directory are not meant to be fitted against this x.
    reasons = failed["error"].str.split(";").str[0].value_counts()
    out.append(Verdict(f"{len(failed)} of {len(fitted)} families against {fitted['x'].iloc[0]} "
                       "not fitted: " + "; ".join(f"{n} x {r}" for r, n in reasons.items()),
                       "inconclusive" if not len(good) else "note"))
  if len(good) >= 2:
    low = good.loc[good["alpha"].idxmin()]
    high = good.loc[good["alpha"].idxmax()]
    overlap = high["alpha_low"] <= low["alpha_high"]
    text = (f"steepest exponent: {high['family']} (alpha {high['alpha']:.3f} "
            f"[{high['alpha_low']:.3f}, {high['alpha_high']:.3f}]) vs flattest {low['family']} "
            f"({low['alpha']:.3f} [{low['alpha_low']:.3f}, {low['alpha_high']:.3f}]): "
            + ("intervals overlap, no difference shown" if overlap else "intervals do not overlap"))
    out.append(Verdict(text, "inconclusive" if overlap else "note"))
  return out


def _learning_rate_note(init: str, by_depth: dict) -> Verdict:
  """Whether one peak LR serves every depth: the best rate per depth, the others within its seed
  spread, and a rate that is best or level with the best at every depth, if any."""
  parts = []
  for depth, (best, level) in by_depth.items():
    others = sorted(level - {best})
    parts.append(f"{best:g} at {depth} layers" + (
        f" ({', '.join(f'{lr:g}' for lr in others)} within the seed spread)" if others else ""))
  shared = sorted(set.intersection(*(level for _, level in by_depth.values())))
  if shared:
    tail = (f": {', '.join(f'{lr:g}' for lr in shared)} is best or level with the best at every "
            "depth tried, so one rate serves every depth")
  else:
    tail = (": no rate is level with the best at every depth, so one rate favours some depths")
  return Verdict(f"{init} init: the best peak LR is " + ", ".join(parts) + tail, "note")


def recipe_fairness(runs: pd.DataFrame) -> list[Verdict]:
  """Per depth, the best recipe (init scheme, peak LR); whether one LR is best at every depth;
  and whether the init scheme changes which depth wins (a recipe deciding the depth verdict)."""
  agg = stats.aggregate_seeds(runs, ("val_loss",))
  if "init_scheme" not in agg:
    agg["init_scheme"] = "fixed"
  out, best_lr = [], {}
  for depth, part in agg.groupby("num_layers", sort=True):
    best = _best(part, "val_loss")
    recipe = f"{part.loc[best, 'init_scheme']} init, LR {part.loc[best, 'peak_lr']:g}"
    if len(part) >= 2:
      runner = _best(part.drop(index=best), "val_loss")
      gap = stats.config_gap(runs, agg, best, runner, "val_loss")
      other = f"{part.loc[runner, 'init_scheme']} init, LR {part.loc[runner, 'peak_lr']:g}"
      out.append(_verdict(f"{depth} layers: best recipe {recipe} "
                          f"({part.loc[best, 'val_loss_mean']:.3f}), ahead of {other} by "
                          f"{gap.describe('nats')}", gap, None, setting=f"{depth} layers",
                          pair=(recipe, other)))
    for init, rates in part.groupby("init_scheme"):
      if rates["peak_lr"].nunique() >= 2:
        top = _best(rates, "val_loss")
        level = {float(rates.loc[i, "peak_lr"]) for i in rates.index
                 if i == top or stats.config_gap(runs, agg, i, top, "val_loss").outside_spread
                 is False}
        best_lr.setdefault(init, {})[depth] = (float(rates.loc[top, "peak_lr"]), level)
  for init, by_depth in best_lr.items():
    if len(by_depth) >= 2:
      out.append(_learning_rate_note(init, by_depth))
  winners = {}
  for (init, lr), part in agg.groupby(["init_scheme", "peak_lr"], sort=False):
    if part["num_layers"].nunique() >= 2:
      best = _best(part, "val_loss")
      winners[f"{init} init at LR {lr:g}"] = (int(part.loc[best, "num_layers"]),
                                             part["num_layers"].nunique())
  if len(winners) >= 2:
    depths = {depth for depth, _ in winners.values()}
    out.append(Verdict("best depth per recipe: " + "; ".join(
        f"{name}: {depth} layers (of {count})" for name, (depth, count) in winners.items())
        + ("; the recipe does not change which depth wins" if len(depths) == 1
           else "; the recipe changes which depth wins, so it decides the depth-vs-width verdict"),
        "note"))
  return out


def generic(runs: pd.DataFrame) -> list[Verdict]:
  """For a sweep without a paper counterpart: the best config against the runner-up."""
  agg = stats.aggregate_seeds(runs)
  if len(agg) < 2:
    return [Verdict("one config: nothing to compare", "inconclusive")]
  out = []
  for metric in tables.comparable_metrics(agg):
    best = _best(agg, metric)
    runner = _best(agg.drop(index=best), metric)
    names = (agg.loc[best, "config"], agg.loc[runner, "config"])
    gap, _, pair = _contest(runs, agg, best, runner, metric, names)
    text = (f"best on {NAMES[metric]}: {names[0]}, ahead of {names[1]} by "
            f"{gap.describe(UNITS[metric])}")
    out.append(_verdict(text, gap, None, setting=f"best config, {metric}", pair=pair))
  return out


# Verdict rules by the name a sweep file's VERDICTS gives (the names in study.RULES).
RULES = {"depth_vs_width": depth_vs_width, "ablation_ladder": ablation_ladder,
         "layer_sharing": layer_sharing, "repeat_count": repeat_count,
         "embedding_sharing": embedding_sharing, "heads_kv": heads_kv,
         "depth_vs_tokens": depth_vs_tokens, "recipe_fairness": recipe_fairness,
         "generic": generic}


def for_sweep(name: str, runs: pd.DataFrame) -> list[Verdict]:
  """The verdicts of the rule sweeps/<name>.py declares, plus the zero-shot-vs-chance note."""
  declared = study.of(name)
  found = RULES[declared.verdicts](study.with_paper_steps(runs, declared))
  chance = zeroshot_chance(runs)
  return found + ([chance] if chance else [])
