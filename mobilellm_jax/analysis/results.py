"""Load a sweep's runs (runs/<sweep>/<run>/summary.json, metrics.jsonl, config.json, error.txt)
into pandas, from disk or from the W&B API.

One row per finished run. Nested parts of summary.json are flattened: zero-shot accuracies become
percent columns like the paper's (`zeroshot_avg`, `zeroshot_<task>`, `zeroshot_chance`), the
device dict becomes `device_<key>`, and a few config.json fields that define the run but are not
in the summary (ffn_dim, seq_len, batch size, LR, vocab) become columns too.
"""

import dataclasses
import json
import os
import re
import pandas as pd

LAUNCH_HINT = "python experiments/launch.py --sweep {name}"

# config.json fields that define a run but are not in summary.json: (section, key) -> column.
_CONFIG_COLUMNS = {("model", "ffn_dim"): "ffn_dim", ("model", "vocab_size"): "vocab_size",
                   ("data", "seq_len"): "seq_len", ("data", "dataset"): "dataset",
                   ("train", "batch_size"): "batch_size", ("train", "num_tokens"): "num_tokens",
                   ("optim", "peak_lr"): "peak_lr", ("model", "init_scheme"): "init_scheme",
                   ("tracking", "param_budget"): "param_budget"}
_RUN_FILES = ("summary.json", "error.txt", "config.json", "metrics.jsonl")


@dataclasses.dataclass
class Sweep:
  """The runs of one sweep (or of several, when loaded from a parent directory)."""
  name: str
  path: str | None
  runs: pd.DataFrame  # one row per finished run
  failed: dict[str, str]  # run name -> what went wrong (from its error.txt)
  running: list[str]  # runs with neither summary.json nor error.txt
  curves: pd.DataFrame | None = None  # filled by load_wandb(curves=True); see load_curves

  def group_runs(self, group: str) -> pd.DataFrame:
    """The finished runs of one sweep (by `group`); all runs when none has a group. Raises,
    saying what to run, when there are none."""
    runs = self.runs
    if len(runs) and "group" in runs and runs["group"].astype(str).ne("").any():
      runs = runs[runs["group"] == group]
    if runs.empty:
      raise ValueError(f"no finished runs of sweep {group!r} in {self.path!r}; run "
                       f"`{LAUNCH_HINT.format(name=group)}` (it writes runs/{group}/)")
    return runs

  @property
  def groups(self) -> list[str]:
    """The sweeps among the finished runs (the sweep's own name when runs carry no group)."""
    named = set(self.runs["group"].astype(str)) - {""} if "group" in self.runs else set()
    return sorted(named) or [self.name]

  def __repr__(self) -> str:
    # Inside the repository, the path from its root: a stored notebook reads the same anywhere.
    shown = os.path.relpath(os.path.abspath(self.path), _REPO)
    shown = self.path if shown.startswith("..") else shown
    return (f"Sweep({self.name!r}: {len(self.runs)} finished, {len(self.failed)} failed, "
            f"{len(self.running)} in progress; path={shown!r})")


def sweep_name_of(runs: pd.DataFrame, path: str | None) -> str:
  """The runs' `group` when they share one, else the directory's name (also for a directory
  that holds several sweeps)."""
  groups = set(runs["group"].astype(str)) - {""} if "group" in runs else set()
  if len(groups) == 1:
    return groups.pop()
  return os.path.basename(os.path.normpath(path)) if path else "sweep"


def flatten_summary(summary: dict, config: dict | None = None) -> dict:
  """One DataFrame row from a summary.json (and the run's config.json, when there is one)."""
  row = {k: v for k, v in summary.items()
         if k not in ("zeroshot", "device", "versions", "tokenizer")}
  zeroshot = summary.get("zeroshot") or {}
  if zeroshot:
    # Percent, like the paper's tables. acc is the paper's metric (LLaMA-style ranking).
    for key, column in (("avg_acc", "zeroshot_avg"), ("avg_acc_norm", "zeroshot_avg_norm"),
                        ("avg_chance", "zeroshot_chance")):
      if zeroshot.get(key) is not None:
        row[column] = 100.0 * zeroshot[key]
    for task, values in (zeroshot.get("tasks") or {}).items():
      row[f"zeroshot_{task}"] = 100.0 * values["acc"]
      row[f"zeroshot_{task}_norm"] = 100.0 * values.get("acc_norm", float("nan"))
      row[f"zeroshot_{task}_chance"] = 100.0 * values.get("chance", float("nan"))
      row[f"zeroshot_{task}_n"] = values.get("num_questions")
  for key, value in (summary.get("device") or {}).items():
    row[f"device_{key}"] = value
  versions = summary.get("versions") or {}
  if "jax" in versions:
    row["jax_version"] = versions["jax"]
  for (section, key), column in _CONFIG_COLUMNS.items():
    value = ((config or {}).get(section) or {}).get(key)
    if value is not None and column not in row:
      row[column] = value
  return row


def _read_json(path: str):
  with open(path) as f:
    return json.load(f)


def _error_message(path: str) -> str:
  """What went wrong: the launcher writes 'Type: message' first, then the traceback; a bare
  traceback says it on its last line."""
  with open(path, errors="replace") as f:
    lines = [line.strip() for line in f if line.strip()]
  if not lines:
    return "(empty error.txt)"
  return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _is_run_dir(path: str) -> bool:
  return os.path.isdir(path) and any(os.path.exists(os.path.join(path, f)) for f in _RUN_FILES)


def _missing_message(path: str) -> str:
  name = os.path.basename(os.path.normpath(path))
  return (f"no runs in {path!r}; run the sweep first: `{LAUNCH_HINT.format(name=name)}` "
          f"(or pass the directory the launcher wrote, e.g. runs/<sweep>)")


def _run_dirs(path: str) -> list[str]:
  """Run directories under `path`: its children, or its grandchildren when it holds sweeps."""
  children = sorted(os.path.join(path, c) for c in os.listdir(path))
  runs = [c for c in children if _is_run_dir(c)]
  if runs:
    return runs
  return [g for c in children if os.path.isdir(c)
          for g in sorted(os.path.join(c, n) for n in os.listdir(c)) if _is_run_dir(g)]


_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve_dir(path: str) -> str:
  """`path` as given, or relative to the repository root (notebooks run from analysis/)."""
  if os.path.isabs(path) or os.path.exists(path):
    return path
  candidate = os.path.join(_REPO, path)
  return candidate if os.path.exists(candidate) else path


def load_sweep(path: str) -> Sweep:
  """All runs under a sweep directory (runs/<sweep>) or a directory of sweeps (runs/)."""
  path = resolve_dir(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(_missing_message(path))
  rows, failed, running = [], {}, []
  for run_dir in _run_dirs(path):
    name = os.path.basename(run_dir)
    summary_path = os.path.join(run_dir, "summary.json")
    config_path = os.path.join(run_dir, "config.json")
    if os.path.exists(summary_path):
      config = _read_json(config_path) if os.path.exists(config_path) else None
      row = flatten_summary(_read_json(summary_path), config)
      row.setdefault("name", name)
      row["run_dir"] = run_dir
      rows.append(row)
    elif os.path.exists(os.path.join(run_dir, "error.txt")):
      failed[name] = _error_message(os.path.join(run_dir, "error.txt"))
    else:
      running.append(name)
  if not rows and not failed and not running:
    raise FileNotFoundError(_missing_message(path))
  runs = pd.DataFrame(rows)
  if not runs.empty:
    runs = runs.sort_values(["group", "name"] if "group" in runs else ["name"],
                            ignore_index=True)
  return Sweep(sweep_name_of(runs, path), path, runs, failed, running)


def require_runs(sweep: Sweep) -> pd.DataFrame:
  """The finished runs, or an error saying why there are none and what to run."""
  if sweep.runs.empty:
    detail = "; ".join(f"{n}: {e}" for n, e in list(sweep.failed.items())[:3])
    raise ValueError(f"sweep {sweep.name!r} has no finished runs ({len(sweep.failed)} failed"
                     f"{': ' + detail if detail else ''}; {len(sweep.running)} in progress); "
                     f"run `{LAUNCH_HINT.format(name=sweep.name)}` and wait for it to finish")
  return sweep.runs


def read_metrics(path: str) -> pd.DataFrame:
  """One run's metrics.jsonl; a line cut short by a crash is skipped, not fatal."""
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return pd.DataFrame(records)


def load_curves(sweep: Sweep | str, runs: pd.DataFrame | None = None) -> pd.DataFrame:
  """Loss curves, long format: one row per logged step with `name` and `run_dir`; train lines
  have `loss`, eval lines `val_loss`. Default: every run under the sweep (in-progress and failed
  ones too); `runs`: only those runs (rows of sweep.runs)."""
  if isinstance(sweep, str):
    sweep = load_sweep(sweep)
  if sweep.curves is not None:  # from W&B
    curves = sweep.curves
    return curves if runs is None else curves[curves["name"].isin(runs["name"])]
  run_dirs = _run_dirs(sweep.path) if runs is None else list(runs["run_dir"])
  frames = []
  for run_dir in run_dirs:
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(metrics_path):
      frame = read_metrics(metrics_path)
      if not frame.empty:
        frames.append(frame.assign(name=os.path.basename(run_dir), run_dir=run_dir))
  if not frames:
    return pd.DataFrame(columns=["name", "run_dir", "step", "loss", "val_loss"])
  return pd.concat(frames, ignore_index=True)


def _last(value):
  """A metric W&B summarises as {"last": .., "min": ..} (dashboards.SUMMARISED) -> its last."""
  return value["last"] if hasattr(value, "keys") and "last" in value.keys() else value


_WANDB_STATE = {"finished": "done", "failed": "failed", "crashed": "failed", "killed": "failed"}


def load_wandb(project: str, *, entity: str | None = None, group: str | None = None,
               curves: bool = False, api=None) -> Sweep:
  """The same Sweep from the W&B API (needs network and `wandb login`). `group` = sweep name."""
  if api is None:
    import wandb  # pylint: disable=import-outside-toplevel  (slow; only needed online)
    api = wandb.Api()
  path = f"{entity}/{project}" if entity else project
  filters = {"group": group} if group else None
  rows, failed, running, frames = [], {}, [], []
  for run in api.runs(path, filters=filters):
    if getattr(run, "job_type", "") == "analysis":  # the sweep's summary run (summary_run.py)
      continue
    state = _WANDB_STATE.get(run.state, "running")
    if state == "failed":
      failed[run.name] = f"W&B state {run.state}"
      continue
    if state == "running":
      running.append(run.name)
      continue
    summary = {k: _last(v) for k, v in dict(run.summary).items() if not k.startswith("_")}
    config = dict(run.config)
    summary.setdefault("name", run.name)
    summary.setdefault("group", run.group or group or "")
    # The tracker uploads only scalar summary values; the config carries the model fields.
    for key, value in (config.get("model") or {}).items():
      summary.setdefault(key, value)
    summary.setdefault("seed", (config.get("train") or {}).get("seed"))
    summary.setdefault("label", (config.get("tracking") or {}).get("label", ""))
    rows.append(flatten_summary(summary, config))
    if curves:
      frames.append(pd.DataFrame(list(run.scan_history())).assign(name=run.name))
  runs = pd.DataFrame(rows)
  name = group or project
  history = pd.concat(frames, ignore_index=True) if frames else None
  return Sweep(name, None, runs, failed, running, curves=history)


def config_id(name: str) -> str:
  """The run name without its seed suffix: 'L8-d128-h4kv2-share_none-s1' -> '...share_none'."""
  return re.sub(r"-s\d+$", "", name)
