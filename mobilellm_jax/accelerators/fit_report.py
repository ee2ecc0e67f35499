"""Words for what aot.py and fit_search.py found: the compile CLI's report, and one line per run
for the launcher's dry run."""

from mobilellm_jax.accelerators import aot
from mobilellm_jax.model import counting
from mobilellm_jax.accelerators.chips import Target
from mobilellm_jax.accelerators.fit_search import Search, Trial, with_overrides

GIB = 1024 ** 3


def gib(num_bytes: float) -> str:
  """GiB with two decimals, or MiB below one GiB."""
  if num_bytes < GIB:
    return f"{num_bytes / 1024 ** 2:.1f} MiB"
  return f"{num_bytes / GIB:.2f} GiB"


def flop(count: float) -> str:
  """FLOPs in the unit that keeps them readable (GFLOP, TFLOP...)."""
  for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
    if count >= scale:
      return f"{count / scale:,.2f} {unit}"
  return f"{count / 1e6:,.2f} MFLOP"


def flags(overrides: dict, config) -> str:
  """The command-line flags that set those of `overrides` that change `config`."""
  def current(field):
    section, name = field.split(".")
    return config[section][name]
  return " ".join(f"--config.{field}={value}" for field, value in overrides.items()
                  if value != current(field))


def memory_line(report: aot.StepReport) -> str:
  """Per-chip memory of one compiled step against the chip's memory."""
  if report.memory is None:
    return (f"refused by the compiler: needs {gib(report.needed_bytes)} of "
            f"{gib(report.limit_bytes)} ({report.refusal})")
  m = report.memory
  donated = f" (+ {gib(m.alias)} written over the donated arguments)" if m.alias else ""
  parts = [f"arguments {gib(m.argument)}", f"outputs {gib(m.output - m.alias)}{donated}",
           f"temporaries {gib(m.temp)}", f"code {gib(m.code)}"]
  verdict = "fits" if report.fits else "does not fit"
  return f"{' + '.join(parts)} = {gib(m.total)} of {gib(report.limit_bytes)}: {verdict}"


def trial_line(trial: Trial) -> str:
  r = trial.report
  outcome = (f"fits in {gib(r.needed_bytes)}" if r.fits else f"needs {gib(r.needed_bytes)}")
  return f"  {trial.layout.describe()}: {outcome} ({r.compile_seconds:.0f} s to compile)"


def target_line(target: Target) -> str:
  chip = target.chip
  peak = f", {chip.peak_flops / 1e12:.0f} TFLOP/s bf16 peak" if chip.peak_flops else ""
  return (f"{target.name}: {target.num_chips} x {chip.name} ({gib(chip.hbm_bytes)} memory "
          f"each{peak})")


def estimate_lines(config, target: Target, report: aot.StepReport) -> list[str]:
  """FLOPs (the compiler's beside ours) and the estimated step time of a fitting train step."""
  seq_len = config.data.seq_len
  tokens = config.train.batch_size * seq_len
  ours = counting.flops_per_token(config.model, seq_len) * tokens / target.num_chips
  lines = []
  if report.flops is not None:
    per_token = counting.flops_per_token(config.model, seq_len)
    lines.append(f"FLOPs per chip per step: the compiler counts {flop(report.flops)} (XLA's cost "
                 "analysis counts each loop body once: the scan over layers as one layer); ours "
                 f"{flop(ours)} ({flop(per_token)}/token, counting.py)")
  est = aot.estimate(config, target)
  if est is None:
    lines.append("no step-time estimate: no datasheet peak for this chip")
    return lines
  lines.append(
      f"ESTIMATE, not a measurement (datasheet peak {target.chip.peak_flops / 1e12:.0f} "
      f"TFLOP/s): executing {flop(est.executed_flops_per_chip)} per chip per step "
      f"(remat={config.model.remat} recomputes {est.executed_flops_per_chip / est.model_flops_per_chip - 1:.0%}) "
      f"takes >= {est.roofline_seconds * 1e3:,.1f} ms at peak (MFU <= {est.mfu_bound:.0%}) and "
      f"~{est.seconds * 1e3:,.1f} ms at an assumed {aot.ASSUMED_MFU:.0%} MFU: "
      f"{tokens / est.seconds / 1e6:,.2f}M tokens/s on the slice")
  return lines


def describe(config, target: Target, search: Search, eval_report: aot.StepReport | None) -> str:
  """The compile CLI's report."""
  m = config.model
  params = counting.param_counts(m)["params"]
  lines = [target_line(target),
           f"{config.preset}: {params:,} params, {counting.effective_depth(m)} effective layers, "
           f"batch {config.train.batch_size} x {config.data.seq_len} tokens per step",
           f"as given: {search.given.layout.describe()}",
           f"  train step per chip: {memory_line(search.given.report)}"]
  if search.tried:
    lines.append(f"tried {len(search.tried)} other setting(s), one compile each")
  fitting = search.fitting
  if fitting is None:
    lines.append(f"nothing tried fits on {target.name}: use more chips, a smaller global batch "
                 "(train.batch_size) or a smaller model")
    return "\n".join(lines)
  fitted = with_overrides(config, fitting.overrides)
  if fitting is not search.given:
    lines += [f"fits with: {flags(fitting.overrides, config)}",
              f"  {fitting.layout.describe()}",
              f"  train step per chip: {memory_line(fitting.report)}"]
  if eval_report is not None:
    lines.append(f"  eval step per chip: {memory_line(eval_report)}")
  lines += ["  " + line for line in estimate_lines(fitted, target, fitting.report)]
  return "\n".join(lines)


def one_line(config, search: Search) -> str:
  """The launcher's fit column: per-chip memory of the given setting, or what fits instead."""
  given = search.given.report
  if given.fits:
    return f"fits ({gib(given.needed_bytes)}/chip)"
  if search.fitting is None:
    return f"does not fit ({gib(given.needed_bytes)}/chip); nothing tried fits"
  return (f"does not fit ({gib(given.needed_bytes)}/chip); fits with "
          f"{flags(search.fitting.overrides, config)} "
          f"({gib(search.fitting.report.needed_bytes)}/chip)")


def sweep_lines(runs, target: Target, log=None) -> list[str]:
  """The launcher's dry-run section: each run's fit on `target`, searched when it does not fit."""
  from mobilellm_jax.accelerators.fit_search import search  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.training.tracking import run_name  # pylint: disable=import-outside-toplevel
  lines = [f"fit per chip on {target_line(target)} (compiled here; searched when it does not fit):"]
  for config in runs:
    lines.append(f"{run_name(config):<40} {one_line(config, search(config, target))}")
    if log:
      log(lines[-1])
  return lines
