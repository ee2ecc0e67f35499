"""Run a sweep: plan (dry run), prepare data, train each run (locally or as SLURM array tasks),
skip finished runs, record failures, and write the results table and plot."""

import dataclasses
import math
import os
import traceback

import ml_collections

from mobilellm_jax.accelerators import peaks
from mobilellm_jax.analysis import study
from mobilellm_jax.model import counting, footprint
from mobilellm_jax.runner import sweeps
from mobilellm_jax.training import runtime
from mobilellm_jax.training.tracking import run_name

# Throughput assumed for time estimates (labelled as such wherever printed).
ASSUMED_CPU_MFU = 0.30  # a little under what bench/train_throughput.py measures at cpu-preset sizes
ASSUMED_ACCELERATOR = ("A100", 312e12, 0.40)  # name, bf16 peak FLOP/s, MFU


@dataclasses.dataclass
class Plan:
  """A sweep's runs with where they go."""
  sweep: str
  scale: str
  directory: str
  runs: list  # ConfigDicts


def sweep_directory(workdir: str, sweep: str, scale: str) -> str:
  """runs/<sweep> at the default cpu scale, runs/<sweep>-<scale> otherwise."""
  return os.path.join(workdir, sweep if scale == "cpu" else f"{sweep}-{scale}")


def make_plan(sweep: str, scale: str = "cpu", *, workdir: str = "runs", seeds=None,
              only: str = "", shard: str = "", data_dir: str = "") -> Plan:
  runs = sweeps.expand(sweep, scale, seeds=seeds, only=only, shard=shard, data_dir=data_dir)
  study.of(sweep)  # a PLOT or VERDICTS the analysis does not know fails here, not after training
  return Plan(sweep, scale, sweep_directory(workdir, sweep, scale), runs)


def run_row(config) -> dict:
  """What the dry run and the results table say about one run before it trains."""
  m = config.model
  counts = counting.param_counts(m)
  steps = config.train.num_steps or math.ceil(
      config.train.num_tokens / (config.train.batch_size * config.data.seq_len))
  tokens = steps * config.train.batch_size * config.data.seq_len
  train_flops = counting.flops_per_token(m, config.data.seq_len) * tokens
  budget = config.tracking.param_budget
  paper_params = config.tracking.get("paper_params", 0)
  return dict(
      name=run_name(config), label=config.tracking.label, layers=m.num_layers,
      effective_depth=counting.effective_depth(m), dim=m.dim, heads=f"{m.num_heads}/{m.num_kv_heads}",
      ffn=f"{m.ffn_type} {m.ffn_dim}", tied=m.tie_embeddings,
      sharing="none" if m.layer_sharing == "none" else f"{m.layer_sharing} x{m.share_repeats}",
      params=counts["params"], budget_deviation=(counts["params"] / budget - 1) if budget else None,
      paper_params=paper_params,
      paper_deviation=(counts["params"] / paper_params - 1) if paper_params else None,
      # The regime: how far from convergence, how much of the model is the embedding, its shape.
      tokens_per_param=tokens / counts["params"],
      embedding_share=1 - counts["non_embedding_params"] / counts["params"],
      aspect_ratio=m.dim / m.num_layers,
      peak_lr=config.optim.peak_lr, warmup_steps=config.optim.warmup_steps,
      batch=f"{config.train.batch_size}x{config.data.seq_len}",
      tokens=tokens, train_flops=train_flops, **footprint.device_footprint(m))


def estimate(row: dict, scale: str, cpu_peak: float | None) -> str:
  if scale == "paper":
    name, peak, mfu = ASSUMED_ACCELERATOR
    return f"{row['train_flops'] / (peak * mfu) / 86400:,.1f} {name}-days"
  return f"{row['train_flops'] / (cpu_peak * ASSUMED_CPU_MFU) / 60:,.1f} min"


def format_dry_run(plan: Plan, module, target=None) -> str:
  """The plan as a table; with `target` (chips.Target) each run's train step is also
  compiled for it and its fit per chip shown (fit_report.sweep_lines)."""
  cpu_peak = peaks.machine_peak_flops()[0] if plan.scale != "paper" else None
  rows = [run_row(c) for c in plan.runs]
  header = (f"{'run':<40} {'label':<24} {'L':>3} {'Leff':>4} {'dim':>5} {'D/L':>5} {'q/kv':>6} "
            f"{'ffn':>12} {'params':>12} {'vs budget':>9} {'paper':>16} {'emb %':>5} "
            f"{'peak LR':>8} {'warmup':>6} {'batch':>9} {'tokens':>10} {'tok/param':>9} "
            f"{'FLOPs':>9} {'fp16 MB':>8} {'int8 MB':>8} {'block MB':>8} {'SRAM':>4} "
            f"{'MB/token':>8} {'estimate':>14}")
  lines = [f"sweep {plan.sweep} ({plan.scale}): {len(rows)} runs -> {plan.directory}",
           getattr(module, "DESCRIPTION", ""), header]
  for r in rows:
    deviation = f"{r['budget_deviation']:+.1%}" if r["budget_deviation"] is not None else "-"
    paper = (f"{r['paper_params'] / 1e6:.1f}M ({r['paper_deviation']:+.1%})"
             if r["paper_params"] else "-")
    lines.append(
        f"{r['name']:<40} {r['label'][:24]:<24} {r['layers']:>3} {r['effective_depth']:>4} "
        f"{r['dim']:>5} {r['aspect_ratio']:>5.0f} {r['heads']:>6} {r['ffn']:>12} "
        f"{r['params']:>12,} {deviation:>9} {paper:>16} {r['embedding_share']:>5.0%} "
        f"{r['peak_lr']:>8.2g} {r['warmup_steps']:>6} {r['batch']:>9} {r['tokens']:>10,} "
        f"{r['tokens_per_param']:>9.3g} {r['train_flops']:>9.2e} {r['weights_mb_fp16']:>8.1f} "
        f"{r['weights_mb_int8']:>8.1f} {r['largest_block_mb_fp16']:>8.2f} "
        f"{'yes' if r['fits_sram_20mb'] else 'no':>4} {r['weight_bytes_per_token'] / 1e6:>8.1f} "
        f"{estimate(r, plan.scale, cpu_peak):>14}")
  total = sum(r["train_flops"] for r in rows)
  if plan.scale == "paper":
    name, peak, mfu = ASSUMED_ACCELERATOR
    lines.append(f"total {total:.3e} FLOPs = {total / (peak * mfu) / 86400:,.1f} {name}-days "
                 f"(assumed {mfu:.0%} MFU of {peak / 1e12:.0f} TFLOP/s)")
  else:
    lines.append(f"total {total:.3e} FLOPs ~ {total / (cpu_peak * ASSUMED_CPU_MFU) / 60:,.0f} min on "
                 f"this machine (assumed {ASSUMED_CPU_MFU:.0%} MFU of the measured "
                 f"{cpu_peak / 1e9:.0f} GFLOP/s), plus ~15 s compile and eval per run")
  lines.append("D/L: dim / layers (aspect ratio); paper: the paper's count for that model, where "
               "it states one, and ours against it; emb %: the embedding's share of the params")
  lines.append("MB/token: weight bytes read from DRAM per generated token (fp16; a block that "
               "runs twice in a row and fits the 20 MB SRAM is read once)")
  if getattr(module, "NOTE", ""):
    lines.append(module.NOTE)
  if target is not None:
    from mobilellm_jax.accelerators import fit_report  # pylint: disable=import-outside-toplevel
    lines += fit_report.sweep_lines(plan.runs, target)
  return "\n".join(lines)


def ensure_data(runs) -> None:
  """Builds the embedded corpus, each needed tokenizer and (when runs score zero-shot) the task
  data once; a no-op when present."""
  from mobilellm_jax.data import prepare  # pylint: disable=import-outside-toplevel
  needed = {}
  for config in runs:
    d = config.data
    if d.dataset == "mobilellm_corpus" and not d.tokenizer_path:
      needed[(d.data_dir, config.model.vocab_size)] = True
  for data_dir, vocab_size in needed:
    prepare.prepare(data_dir or None, vocab_size=vocab_size)
  task_dirs = {c.data.data_dir for c in runs if c.eval.tasks.strip()}
  if task_dirs:
    from mobilellm_jax.evaluation import prepare_tasks  # pylint: disable=import-outside-toplevel
    for data_dir in task_dirs:
      prepare_tasks(data_dir or None)


def run_one(config_dict: dict, run_dir: str, restart: bool = False) -> dict:
  """Trains one run (picklable: SLURM tasks call this). A failure is written to error.txt.
  `restart`: train(..., restart=True), i.e. set the run's old files aside and start over."""
  from mobilellm_jax.training.loop import train  # pylint: disable=import-outside-toplevel
  runtime.prepare_process()  # here as well as in the CLI: SLURM tasks start in this function
  config = ml_collections.ConfigDict(config_dict)
  error_path = os.path.join(run_dir, "error.txt")
  try:
    summary = train(config, run_dir, restart=restart)
  except Exception as error:  # the sweep goes on; the error is kept with the run
    os.makedirs(run_dir, exist_ok=True)
    with open(error_path, "w") as f:
      f.write(f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}")
    return dict(name=run_name(config), status="failed", error=f"{type(error).__name__}: {error}")
  if os.path.exists(error_path):
    os.remove(error_path)  # an earlier failure, now fixed
  return dict(name=run_name(config), status="done", val_loss=summary["val_loss"])


def pending_runs(plan: Plan) -> list:
  return [c for c in plan.runs
          if not os.path.exists(os.path.join(plan.directory, run_name(c), "summary.json"))]


def execute(plan: Plan, backend: str = "local", executor=None, log=print,
            restart: bool = False) -> list[dict]:
  """Trains every run without a summary; returns one status dict per run trained. `restart`
  starts each of them over from step 0 (their old files are set aside, not deleted)."""
  todo = pending_runs(plan)
  skipped = len(plan.runs) - len(todo)
  log(f"sweep {plan.sweep} ({plan.scale}): {len(plan.runs)} runs, {skipped} already done, "
      f"{len(todo)} to train -> {plan.directory}")
  if not todo:
    return []
  ensure_data(todo)
  jobs = [(c.to_dict(), os.path.join(plan.directory, run_name(c))) for c in todo]
  if backend == "local":
    statuses = []
    for index, (config_dict, run_dir) in enumerate(jobs, 1):
      log(f"[{index}/{len(jobs)}] {os.path.basename(run_dir)}")
      statuses.append(run_one(config_dict, run_dir, restart))
      if statuses[-1]["status"] == "failed":
        log(f"  failed: {statuses[-1]['error']} (details in {run_dir}/error.txt)")
    return statuses
  if backend == "slurm":
    executor = executor or _slurm_executor(plan)
    submitted = executor.map_array(run_one, [j[0] for j in jobs], [j[1] for j in jobs],
                                   [restart] * len(jobs))
    log(f"submitted {len(submitted)} SLURM array tasks (job {submitted[0].job_id.split('_')[0]}); "
        "waiting for them (re-launch later to collect results; finished runs are skipped)")
    return [job.result() for job in submitted]
  raise ValueError(f"unknown backend {backend!r}; expected 'local' or 'slurm'")


def _slurm_executor(plan: Plan):
  import submitit  # pylint: disable=import-outside-toplevel
  executor = submitit.AutoExecutor(folder=os.path.join(plan.directory, "slurm", "%j"))
  executor.update_parameters(name=plan.sweep, timeout_min=24 * 60,
                             slurm_array_parallelism=max(1, len(plan.runs)))
  return executor


RESULT_COLUMNS = {"name": "run", "label": "label", "num_layers": "layers", "dim": "dim",
                  "params": "params", "val_loss": "val loss", "val_perplexity": "perplexity",
                  "zeroshot_avg": "zero-shot avg", "tokens_per_s": "tokens/s", "mfu": "MFU"}


def finish(plan: Plan, log=print) -> str:
  """Per-run table (printed, results.csv, results.md), the seed-aggregated table with verdicts,
  the headline plot (<sweep>.png) and REPORT.md, all in the sweep's directory; unless W&B is
  disabled, the sweep's summary run and its workspace (summary_run.py, dashboards.py)."""
  from mobilellm_jax import analysis  # pylint: disable=import-outside-toplevel  (pandas, matplotlib)
  sweep = analysis.load_sweep(plan.directory)
  # Every finished run of the sweep's points, any seed, in the sweep file's order: the tables
  # describe the study, not only what this invocation's --seeds / --only / --shard trained.
  points = {}
  for config in sweeps.expand(plan.sweep, plan.scale):
    points.setdefault(analysis.results.config_id(run_name(config)), len(points))
  runs = sweep.runs
  if len(runs):
    point = runs["name"].map(analysis.results.config_id)
    runs = runs[point.isin(points)].assign(_point=point.map(points))
    runs = runs.sort_values(["_point", "seed"] if "seed" in runs else ["_point"])
    runs = runs.drop(columns="_point")
  if runs.empty:
    log(f"no finished runs in {plan.directory}")
    return ""
  table = runs[[c for c in RESULT_COLUMNS if c in runs.columns]].rename(columns=RESULT_COLUMNS)
  table.to_csv(os.path.join(plan.directory, "results.csv"), index=False)
  per_run = analysis.tables.markdown(table)
  aggregated = analysis.stats.aggregate_seeds(runs)
  verdicts = analysis.verdicts.for_sweep(plan.sweep, runs)
  verdict_text = "\n".join(f"- {v.text}" for v in verdicts)
  summary = analysis.tables.markdown(analysis.tables.overview(aggregated))
  with open(os.path.join(plan.directory, "results.md"), "w") as f:
    f.write(f"# {plan.sweep} ({plan.scale})\n\n{per_run}\n\n## Over seeds\n\n{summary}\n\n"
            f"## Verdicts\n\n{verdict_text}\n")
  declared = analysis.study.of(plan.sweep)
  headline = declared.headline
  figure = analysis.plots.plot_headline(aggregated, declared.plot, headline, title=plan.sweep)
  analysis.plots.save(figure, os.path.join(plan.directory, f"{plan.sweep}.png"))
  report = analysis.write_report(plan.directory)
  text = f"{per_run}\n\nover seeds:\n{summary}\n\n{verdict_text}\n\nreport: {report}"
  text += _to_wandb(plan, table, aggregated, verdicts, headline)
  log(text)
  return text


def _to_wandb(plan: Plan, table, aggregated, verdicts, headline: str) -> str:
  """The sweep's summary run and the definition of its workspace (dashboards.py), saved to W&B
  when the runs went online. A W&B failure is reported, not raised: the files are complete."""
  if plan.runs[0].tracking.wandb_mode == "disabled":
    return ""
  from mobilellm_jax.training import dashboards, summary_run  # pylint: disable=import-outside-toplevel
  try:
    written = summary_run.record(plan.directory, sweep=plan.sweep, scale=plan.scale,
                                 configs=plan.runs, table=table, aggregated=aggregated,
                                 verdicts=verdicts, headline=headline)
    path = dashboards.write(plan.directory, written["inputs"], entity=written["entity"])
    if written["mode"] == "online":
      return f"\nW&B workspace: {dashboards.publish(plan.directory, written['entity'])}"
    return (f"\nW&B (offline): the summary run is in {plan.directory}/wandb, the workspace in "
            f"{path}; upload with `wandb sync {plan.directory}/wandb/offline-run-* "
            f"{plan.directory}/*/wandb/offline-run-*`, then "
            f"`python -m mobilellm_jax.training.dashboards publish --sweep_dir {plan.directory}`")
  except Exception as error:  # pylint: disable=broad-except
    return f"\nW&B summary not written ({type(error).__name__}: {error}); rerun to retry"
