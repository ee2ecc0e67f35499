"""Tables for notebooks and REPORT.md: seed-aggregated runs, and ours next to the paper's.

Our numbers are validation loss (nats/token, lower is better) and, when the runs were evaluated,
the zero-shot average (percent, higher is better); the paper's are zero-shot averages (percent).
Deltas are against the previous row (ladder) or the reference row (no sharing, 1x, shallowest).
"""

import math

import numpy as np
import pandas as pd

from mobilellm_jax.analysis import paper, stats

UNITS = {"val_loss": "nats", "zeroshot_avg": "points"}


def metrics_of(frame: pd.DataFrame) -> list[str]:
  """Our metrics present in a runs frame or an aggregate (val_loss first)."""
  return [m for m in stats.METRICS
          if (m in frame and frame[m].notna().any())
          or (f"{m}_mean" in frame and frame[f"{m}_mean"].notna().any())]


def comparable_metrics(frame: pd.DataFrame) -> list[str]:
  """The metrics of metrics_of that every row has: what configs can be compared on (zero-shot
  is usually scored for a study's best model only)."""
  return [m for m in metrics_of(frame)
          if (f"{m}_mean" in frame and frame[f"{m}_mean"].notna().all())
          or (f"{m}_mean" not in frame and frame[m].notna().all())]


def pm(mean: float, std: float, digits: int = 3) -> str:
  """'3.412 ± 0.010', or '3.412' when the std is unknown."""
  if mean is None or not math.isfinite(mean):
    return ""
  return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def acc(value) -> str:
  """A paper accuracy as the paper prints it ('45.0'); '' when not reported."""
  return "" if value is None or not math.isfinite(value) else f"{value:.1f}"


def _digits(metric: str) -> int:
  return 3 if metric == "val_loss" else 1


def _cell(value) -> str:
  if isinstance(value, (float, np.floating)):
    return "" if not math.isfinite(value) else f"{value:.4g}"
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value)
  return "" if value is None else str(value)


def markdown(frame: pd.DataFrame) -> str:
  """A GitHub-flavoured markdown table (no tabulate dependency)."""
  columns = [c for c in frame.columns if not str(c).startswith("_")]
  lines = ["| " + " | ".join(str(c) for c in columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
  for _, row in frame.iterrows():
    lines.append("| " + " | ".join(_cell(row[c]).replace("|", "/") for c in columns) + " |")
  return "\n".join(lines)


def _metric_columns(agg: pd.DataFrame, table: pd.DataFrame, reference: pd.Series | None = None,
                    previous: bool = False) -> pd.DataFrame:
  """Add 'val_loss' ('mean ± std') and 'Δ val_loss' columns (vs reference or previous row)."""
  for metric in metrics_of(agg):
    digits = _digits(metric)
    means = agg[f"{metric}_mean"].astype(float)
    table[metric] = [pm(m, s, digits) for m, s in zip(means, agg[f"{metric}_std"])]
    if previous:
      deltas = means.diff()
    elif reference is not None:
      deltas = means - means[reference].iloc[0] if reference.any() else means * np.nan
    else:
      continue
    table[f"Δ {metric}"] = [f"{d:+.{digits}f}" if math.isfinite(d) else "" for d in deltas]
  return table


def overview(agg: pd.DataFrame) -> pd.DataFrame:
  """The configs of a sweep with their seed-aggregated metrics."""
  table = pd.DataFrame(index=agg.index)
  if "label" in agg and agg["label"].astype(str).str.len().gt(0).any():
    table["label"] = agg["label"]
  table["config"] = agg["config"]
  table["params"] = [stats.format_count(p) for p in agg["params"]]
  if "tokens_seen" in agg:
    table["tokens"] = [stats.format_count(t) for t in agg["tokens_seen"]]
  table["seeds"] = agg["n_seeds"]
  return _metric_columns(agg, table)


def depth(agg: pd.DataFrame) -> pd.DataFrame:
  """Ours: one row per depth and budget, deltas against the shallowest at that budget."""
  agg = agg.assign(_budget=stats.budgets_of(agg)).sort_values(["_budget", "num_layers"])
  parts = []
  for budget, part in agg.groupby("_budget", sort=False):
    table = pd.DataFrame({"budget": budget, "layers": part["num_layers"], "dim": part["dim"],
                          "heads/kv": [f"{h}/{k}" for h, k in zip(part["num_heads"],
                                                                  part["num_kv_heads"])],
                          "params": [stats.format_count(p) for p in part["params"]],
                          "dim/layers": [f"{d / l:.0f}" for d, l in zip(part["dim"],
                                                                       part["num_layers"])]},
                         index=part.index)
    # The regime beside the paper's: its 125M grid keeps 13-33% of the parameters in the
    # embedding and trains ~2,000 tokens per parameter.
    if "non_embedding_params" in part:
      table["emb %"] = [f"{100 * (1 - n / p):.0f}" for n, p in zip(part["non_embedding_params"],
                                                                   part["params"])]
    if "tokens_seen" in part:
      table["tokens/param"] = [f"{t / p:.2g}" for t, p in zip(part["tokens_seen"], part["params"])]
    table["seeds"] = part["n_seeds"]
    parts.append(_metric_columns(part, table, reference=part["num_layers"] == part["num_layers"].min()))
  return pd.concat(parts)


def paper_depth() -> pd.DataFrame:
  """The paper's depth-vs-width grid with deltas against its shallowest model."""
  rows = []
  for size, grid in paper.DEPTH_VS_WIDTH.items():
    shallow = min(grid)[2]
    rows += [dict(size=size, layers=layers, dim=dim, **{"dim/layers": f"{dim / layers:.0f}"},
                  avg=acc(avg),
                  **{"Δ avg": f"{avg - shallow:+.1f}"}) for layers, dim, avg in grid]
  return pd.DataFrame(rows)


def order_ladder(agg: pd.DataFrame) -> pd.DataFrame:
  """Ladder configs in the paper's order, by their 'paper_step' (study.with_paper_steps); runs
  with no paper step after, by label."""
  keys = [step.key for step in paper.ABLATION_LADDER]
  step = (list(agg["paper_step"]) if "paper_step" in agg else [None] * len(agg))
  step = [s if s in keys else None for s in step]
  order = [keys.index(s) if s else len(keys) for s in step]
  return (agg.assign(step=step, _order=order).sort_values(["_order", "label"])
          .drop(columns="_order"))


def ladder(agg: pd.DataFrame) -> pd.DataFrame:
  """Ours next to the paper's ladder, step by step, with each step's change over the last."""
  agg = order_ladder(agg)
  steps = {s.key: s for s in paper.ABLATION_LADDER}
  deltas = {size: paper.ladder_deltas(size) for size in ("125M", "350M")}
  table = pd.DataFrame(index=agg.index)
  table["ours"] = agg["label"]
  for size in ("125M", "350M"):
    table[f"paper {size}"] = [acc(getattr(steps[s], f"acc_{size.lower()}")) if s else ""
                              for s in agg["step"]]
    table[f"paper Δ {size}"] = [f"{deltas[size][s]:+.1f}" if s and i else ""
                                for i, s in enumerate(agg["step"])]
  table["seeds"] = agg["n_seeds"]
  return _metric_columns(agg, table, previous=True)


def _strategy_name(row) -> str:
  return "none" if row["layer_sharing"] == "none" else f"{row['layer_sharing']} x{row['share_repeats']}"


def sharing(agg: pd.DataFrame) -> pd.DataFrame:
  """Sharing strategies: ours next to the paper's (350M; 125M where reported), vs no sharing."""
  order = {s: i for i, s in enumerate(("none", "immediate", "repeat_all", "reverse"))}
  agg = agg.assign(_o=agg["layer_sharing"].map(order).fillna(9)).sort_values(["_o", "share_repeats"])
  table = pd.DataFrame({"strategy": [_strategy_name(r) for _, r in agg.iterrows()],
                        "effective depth": agg.get("effective_depth")}, index=agg.index)
  for size, reported in paper.LAYER_SHARING.items():
    base = reported.get("none")
    table[f"paper {size}"] = [acc(reported.get(s, math.nan)) for s in agg["layer_sharing"]]
    if base is not None:
      table[f"paper Δ {size}"] = [f"{reported[s] - base:+.1f}" if s in reported else ""
                                  for s in agg["layer_sharing"]]
  table["seeds"] = agg["n_seeds"]
  return _metric_columns(agg, table, reference=agg["layer_sharing"] == "none")


def repeats(agg: pd.DataFrame) -> pd.DataFrame:
  """Repeat count: ours against 1x; the paper gives only a range for 2x."""
  agg = agg.sort_values(["share_repeats", "layer_sharing"])
  table = pd.DataFrame({"strategy": [_strategy_name(r) for _, r in agg.iterrows()],
                        "repeats": agg["share_repeats"], "seeds": agg["n_seeds"]}, index=agg.index)
  table = _metric_columns(agg, table, reference=agg["share_repeats"] == agg["share_repeats"].min())
  table["paper"] = [f"+{paper.REPEAT_COUNT_GAIN_2X[0]} to +{paper.REPEAT_COUNT_GAIN_2X[1]} points"
                    if r == 2 else ("diminishing" if r > 2 else "") for r in agg["share_repeats"]]
  return table


def embedding_variant(agg: pd.DataFrame) -> pd.Series:
  """'untied', 'tied' (same depth as the untied model) or 'tied_deeper', per config."""
  untied_depth = agg.loc[~agg["tie_embeddings"].astype(bool), "num_layers"]
  base = untied_depth.min() if len(untied_depth) else agg["num_layers"].min()
  return pd.Series(["untied" if not tie else ("tied_deeper" if layers > base else "tied")
                    for tie, layers in zip(agg["tie_embeddings"].astype(bool), agg["num_layers"])],
                   index=agg.index)


def with_embedding_variant(agg: pd.DataFrame) -> pd.DataFrame:
  """agg with a `variant` column, in the paper's order: untied, tied, tied_deeper."""
  order = {key: i for i, (key, *_) in enumerate(paper.EMBEDDING_SHARING)}
  agg = agg.assign(variant=embedding_variant(agg))
  return agg.assign(_o=agg["variant"].map(order)).sort_values(["_o", "num_layers"]).drop(columns="_o")


def embedding(agg: pd.DataFrame) -> pd.DataFrame:
  """Embedding sharing: ours next to the paper's three 125M models."""
  agg = with_embedding_variant(agg)
  reported = {key: (params, acc) for key, _, params, acc in paper.EMBEDDING_SHARING}
  table = pd.DataFrame({"variant": agg["variant"], "layers": agg["num_layers"],
                        "params": [stats.format_count(p) for p in agg["params"]],
                        "paper params": [stats.format_count(reported[v][0]) for v in agg["variant"]],
                        "paper 125M": [acc(reported[v][1]) for v in agg["variant"]],
                        "seeds": agg["n_seeds"]}, index=agg.index)
  return _metric_columns(agg, table, reference=agg["variant"] == "untied")


def heads(agg: pd.DataFrame) -> pd.DataFrame:
  """Query and KV heads; the paper's finding is qualitative (see paper.HEADS_NOTE)."""
  agg = agg.sort_values(["num_heads", "num_kv_heads"], ascending=[True, False])
  table = pd.DataFrame({"heads": agg["num_heads"], "kv heads": agg["num_kv_heads"],
                        "head_dim": agg["dim"] // agg["num_heads"], "dim": agg["dim"],
                        "params": [stats.format_count(p) for p in agg["params"]],
                        "seeds": agg["n_seeds"]}, index=agg.index)
  return _metric_columns(agg, table)


def tokens(agg: pd.DataFrame) -> pd.DataFrame:
  """Validation loss by depth (rows) and training tokens (columns)."""
  cells = agg.assign(cell=[pm(m, s) for m, s in zip(agg["val_loss_mean"], agg["val_loss_std"])],
                     tokens=[stats.format_count(t) for t in agg["tokens_seen"]])
  order = [stats.format_count(t) for t in sorted(agg["tokens_seen"].unique())]
  table = cells.pivot_table(index=["num_layers", "dim"], columns="tokens", values="cell",
                            aggfunc="first")
  return table.reindex(columns=order).reset_index()


def final_models(runs: pd.DataFrame) -> pd.DataFrame:
  """Per-task zero-shot accuracy of runs of released presets, next to the paper's 1T numbers."""
  rows = []
  if "preset" not in runs or "zeroshot_avg" not in runs:
    return pd.DataFrame()
  for preset, part in runs.groupby("preset"):
    model = paper.PRESET_TO_FINAL_MODEL.get(str(preset))
    if model is None or part["zeroshot_avg"].isna().all():
      continue
    reported = paper.FINAL_MODELS[model]
    for source, values in (("paper (1T tokens)", reported),
                           (f"ours ({stats.format_count(part['tokens_seen'].mean())} tokens, "
                            f"{len(part)} seeds)",
                            {t: part.get(f"zeroshot_{t}", pd.Series(dtype=float)).mean()
                             for t in paper.TASKS} | {"avg": part["zeroshot_avg"].mean()})):
      rows.append(dict(model=model, source=source, **{t: values.get(t, math.nan)
                                                       for t in (*paper.TASKS, "avg")}))
  return pd.DataFrame(rows)


def baselines() -> pd.DataFrame:
  return pd.DataFrame([dict(model=m, avg=acc(a)) for m, a in paper.BASELINES.items()])


def winners(verdicts, paper_results=()) -> pd.DataFrame:
  """Who wins each comparison and by how much: the paper's rows, then ours."""
  rows = [dict(source="paper", setting=r.setting, winner=r.winner, over=r.reference,
               by=f"{r.margin:+.1f} points", judged="(no seeds reported)") for r in paper_results]
  rows += [dict(source="ours", setting=v.setting, winner=v.winner, over=v.reference, by=v.margin,
                judged=v.status) for v in verdicts if v.winner]
  return pd.DataFrame(rows)
