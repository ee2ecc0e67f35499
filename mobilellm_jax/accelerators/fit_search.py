"""Find a setting whose train step fits the target's memory, by compiling candidates.

Tried in order of what they cost in throughput, cheapest first: parameters and optimizer state
sharded over every chip (fsdp; the gathers overlap with compute), then fewer sequences per chip
per microbatch (more gradient-accumulation steps, same global batch), then rematerialisation
('dots', then 'full'), and on TPU last the 'blocked' attention (which never holds [B, H, L, L]
scores). The first candidate that compiles within memory wins. A refused compile is quick (the
TPU compiler checks memory before it generates code); one that fits takes longer.
"""

import copy
import dataclasses

from mobilellm_jax.accelerators import aot
from mobilellm_jax.accelerators.chips import Target

REMAT_ORDER = ("none", "dots", "full")


@dataclasses.dataclass(frozen=True)
class Trial:
  overrides: dict  # config field -> value, as --config.<field>=<value> flags would set them
  layout: aot.Layout
  report: aot.StepReport


@dataclasses.dataclass(frozen=True)
class Search:
  given: Trial  # the config as given
  fitting: Trial | None  # the given one when it fits, else the first candidate that does
  tried: list  # every candidate compiled, in order


def with_overrides(config, overrides: dict):
  """A copy of `config` with dotted fields set ('train.mesh_fsdp': 16)."""
  config = copy.deepcopy(config)
  for field, value in overrides.items():
    section, name = field.split(".")
    config[section][name] = value
  return config


def candidates(config, target: Target):
  """Override dicts to try, best throughput first (see the module docstring)."""
  tensor = aot.layout(config, target).mesh[2]
  batch_ways = target.num_chips // tensor
  if config.train.batch_size % batch_ways:
    return  # the batch cannot split over every chip: nothing to try beyond the given mesh
  per_chip = config.train.batch_size // batch_ways  # sequences per chip per step
  largest = max(per_chip // config.train.grad_accum_steps, 1)  # never more than given
  chip_batches = [b for b in range(largest, 0, -1) if per_chip % b == 0]
  remats = REMAT_ORDER[REMAT_ORDER.index(config.model.remat):]
  attentions = [config.model.attention]
  if target.platform == "tpu" and aot.layout(config, target).attention == "xla":
    attentions.append("blocked")
  for attention in attentions:
    for remat in remats:
      for chip_batch in chip_batches:
        yield {"train.mesh_data": 1, "train.mesh_fsdp": batch_ways, "train.mesh_tensor": tensor,
               "train.grad_accum_steps": per_chip // chip_batch, "model.remat": remat,
               "model.attention": attention}


def _trial(config, target: Target, overrides: dict) -> Trial:
  changed = with_overrides(config, overrides)
  reports = aot.compile_steps(changed, target, steps=("train",))
  return Trial(overrides, reports["layout"], reports["train"])


def _hopeless(layout: aot.Layout, tried: list) -> bool:
  """Whether a refusal already tried shows this layout cannot fit: memory grows with sequences
  per chip, so one needing N bytes at b sequences needs more than N * b' / b at b' < b."""
  for trial in tried:
    done, report = trial.layout, trial.report
    if (report.memory is None and (done.mesh, done.remat, done.attention) ==
        (layout.mesh, layout.remat, layout.attention) and layout.chip_batch < done.chip_batch
        and report.needed_bytes * layout.chip_batch / done.chip_batch > report.limit_bytes):
      return True
  return False


def search(config, target: Target, *, max_compiles: int = 24, log=None) -> Search:
  """The given config's trial, and when it does not fit, the first candidate that does."""
  given = _trial(config, target, {})
  if log:
    log(given)
  if given.report.fits:
    return Search(given, given, [])
  tried, seen = [], {given.layout}
  for overrides in candidates(config, target):
    if len(tried) >= max_compiles:
      break
    layout = aot.layout(with_overrides(config, overrides), target)
    if layout in seen or _hopeless(layout, tried):
      continue
    seen.add(layout)
    trial = _trial(config, target, overrides)
    tried.append(trial)
    if log:
      log(trial)
    if trial.report.fits:
      return Search(given, trial, tried)
  return Search(given, None, tried)
