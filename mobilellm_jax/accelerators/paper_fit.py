"""The paper's presets at its recipe (sequence 2048, 1024 sequences a step) on TPU slices: what
fits, memory per chip, what XLA's and the blocked attention would need at that same setting,
estimated step time and days, beside the paper's A100 days. One markdown row per (preset,
slice); bench/paper_fit_table.py writes them to docs/paper_fit.md, and a row can be regenerated
from its own cells (one compile per attention kernel) to check the table is the code's."""

import dataclasses

from mobilellm_jax.accelerators import aot, chips, fit_search
from mobilellm_jax.model import counting
from mobilellm_jax.configs import get_config

PRESETS = ("mobilellm_125m", "mobilellm_125m_ls", "mobilellm_350m", "mobilellm_350m_ls",
           "mobilellm_600m", "mobilellm_1b", "mobilellm_1_5b", "baseline_125m", "baseline_350m")
SLICES = ("tpu:v5e:4x4", "tpu:v5p:2x2x4")
PAPER_BATCH = 1024  # sequences of 2048 tokens per step (PAPER.md, training recipe)
TOKEN_BUDGETS = (0.25e12, 1e12)
# Days on 32 A100s for 1T tokens (PAPER.md); the paper gives no figure for the others.
PAPER_DAYS_1T = {"mobilellm_125m": 3, "mobilellm_350m": 6, "mobilellm_600m": 8,
                 "mobilellm_1b": 12, "mobilellm_1_5b": 18}

# Beside the kernel that fits, what these attention kernels need at the same setting.
OTHER_KERNELS = ("xla", "blocked")

HEADER = ("| preset | params | slice | mesh (data x fsdp x tensor) | remat | attention | "
          "seq/chip x microbatches | memory/chip | "
          + " | ".join(f"{kernel}: memory/chip" for kernel in OTHER_KERNELS) +
          " | step (roofline / at 40% MFU) | days 0.25T | days 1T | paper: days 1T on 32 A100 |")
RULE = "|" + "---|" * (HEADER.count("|") - 1)
NOT_COMPILED = "-"  # an other kernel's cell that was not compiled


def paper_config(preset: str):
  config = get_config(preset)
  config.train.batch_size = PAPER_BATCH
  config.train.num_tokens = int(TOKEN_BUDGETS[0])
  return config


@dataclasses.dataclass(frozen=True)
class Row:
  preset: str
  slice: str
  overrides: dict  # what fits, as config fields ({} when nothing does)
  layout: aot.Layout | None
  report: aot.StepReport | None
  # OTHER_KERNELS' train steps at the same setting (absent: not compiled).
  others: dict = dataclasses.field(default_factory=dict)


def _other_kernels(preset: str, slice_spec: str, overrides: dict, used: str) -> dict:
  """{kernel: StepReport} of OTHER_KERNELS but `used` at the setting `overrides`."""
  reports = {}
  for kernel in OTHER_KERNELS:
    if kernel != used:
      config = fit_search.with_overrides(paper_config(preset),
                                         overrides | {"model.attention": kernel})
      reports[kernel] = aot.compile_steps(config, chips.parse(slice_spec),
                                          steps=("train",))["train"]
  return reports


def search_row(preset: str, slice_spec: str, log=None, others: bool = True) -> Row:
  """The row of `preset` on `slice_spec`: the fit search from the preset's own mesh, then
  (`others`) OTHER_KERNELS compiled at the setting it found."""
  config = paper_config(preset)
  search = fit_search.search(config, chips.parse(slice_spec), log=log)
  fitting = search.fitting
  if fitting is None:
    return Row(preset, slice_spec, {}, None, None)
  return Row(preset, slice_spec, fitting.overrides, fitting.layout, fitting.report,
             _other_kernels(preset, slice_spec, fitting.overrides, fitting.layout.attention)
             if others else {})


def compile_row(preset: str, slice_spec: str, overrides: dict, others: bool = True) -> Row:
  """The row of one setting (what the table's test regenerates): one compile, plus one per
  other kernel with `others`."""
  config = fit_search.with_overrides(paper_config(preset), overrides)
  reports = aot.compile_steps(config, chips.parse(slice_spec), steps=("train",))
  return Row(preset, slice_spec, overrides, reports["layout"], reports["train"],
             _other_kernels(preset, slice_spec, overrides, reports["layout"].attention)
             if others else {})


def _need_cell(report: aot.StepReport | None) -> str:
  """What a kernel needs per chip: the compiled step's memory, or what the compiler's refusal
  says it needs."""
  if report is None:
    return NOT_COMPILED
  verdict = "" if report.fits else (" (refused)" if report.memory is None else " (over)")
  return f"{report.needed_bytes / 1024 ** 3:.2f} GiB{verdict}"


def format_row(row: Row) -> str:
  config = fit_search.with_overrides(paper_config(row.preset), row.overrides)
  params = counting.param_counts(config.model)["params"]
  paper = PAPER_DAYS_1T.get(row.preset)
  paper_cell = f"{paper}" if paper else "-"
  if row.layout is None or not row.report.fits:
    return (f"| {row.preset} | {params / 1e6:,.0f}M | {row.slice} | nothing tried fits | - | - | "
            f"- | - | {' | '.join('-' for _ in OTHER_KERNELS)} | - | - | - | {paper_cell} |")
  target = chips.parse(row.slice)
  estimate = aot.estimate(config, target)
  tokens_per_step = config.train.batch_size * config.data.seq_len
  days = [budget / tokens_per_step * estimate.seconds / 86400 for budget in TOKEN_BUDGETS]
  data, fsdp, tensor = row.layout.mesh
  return (f"| {row.preset} | {params / 1e6:,.0f}M | {row.slice} | {data} x {fsdp} x {tensor} | "
          f"{row.layout.remat} | {row.layout.attention} | {row.layout.chip_batch} x "
          f"{row.layout.grad_accum_steps} | {row.report.needed_bytes / 1024 ** 3:.2f} of "
          f"{row.report.limit_bytes / 1024 ** 3:.2f} GiB | "
          f"{' | '.join(_need_cell(row.others.get(kernel)) for kernel in OTHER_KERNELS)} | "
          f"{estimate.roofline_seconds:.2f} s / "
          f"{estimate.seconds:.2f} s | {days[0]:,.1f} | {days[1]:,.1f} | {paper_cell} |")


def _cells(line: str) -> list[str]:
  return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_row(line: str) -> tuple[str, str, dict]:
  """(preset, slice, overrides) from a table row written by format_row."""
  cells = _cells(line)
  preset, slice_spec, mesh, remat, attention, batches = (cells[0], cells[2], cells[3], cells[4],
                                                         cells[5], cells[6])
  data, fsdp, tensor = (int(x) for x in mesh.split(" x "))
  accum = int(batches.split(" x ")[1])
  return preset, slice_spec, {"train.mesh_data": data, "train.mesh_fsdp": fsdp,
                              "train.mesh_tensor": tensor, "train.grad_accum_steps": accum,
                              "model.remat": remat, "model.attention": attention}


def has_others(line: str) -> bool:
  """Whether a row's OTHER_KERNELS cells were compiled (else it is regenerated without them)."""
  first = _cells(HEADER).index(f"{OTHER_KERNELS[0]}: memory/chip")
  return any(cell != NOT_COMPILED for cell in _cells(line)[first:first + len(OTHER_KERNELS)])
