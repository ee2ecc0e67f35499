"""Ahead-of-time compilation of the real train and eval steps for a target this host does not
have (a TPU slice, N CPU devices): memory per chip, the compiler's FLOPs, a roofline time.

Nothing is allocated: the state and batch are shapes with the shardings training/loop.py would
give them, the steps are `training/step.py`'s `jit_train_step` / `jit_eval_step` (the trainer's
own), and the platform decisions (training/target.py) follow the target's devices. The TPU
compiler refuses a program that does not fit in HBM; its message is kept as the verdict.
"""

import dataclasses
import math
import re
import time

import jax
import jax.numpy as jnp
from flax import nnx

from mobilellm_jax.model import counting
from mobilellm_jax.ops import attention
from mobilellm_jax.training import sharding, step as train_step, target as compile_target
from mobilellm_jax.accelerators.chips import Target
from mobilellm_jax.configs import validate, validate_platform
from mobilellm_jax.model import build_model
from mobilellm_jax.training.optim import lr_schedule, make_optimizer
from mobilellm_jax.training.loop import total_steps

# The TPU compiler's refusals: "Used 30.41G of 15.75G hbm" counts everything; "the total memory
# required for HLO temporaries (18.41G) exceeds available HBM (15.75G)" the temporaries alone.
_REFUSALS = (
    (re.compile(r"Used ([\d.]+)([KMGT]) of ([\d.]+)([KMGT]) hbm"), "total"),
    (re.compile(r"HLO temporaries \(([\d.]+)([KMGT])\) exceeds available HBM \(([\d.]+)([KMGT])\)"),
     "temp"),
)
_UNITS = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


@dataclasses.dataclass(frozen=True)
class Memory:
  """Bytes per chip of one compiled program (compiled.memory_analysis())."""
  argument: int
  output: int
  alias: int  # outputs written in place of donated arguments (the train state)
  temp: int
  code: int

  @property
  def total(self) -> int:
    return self.argument + self.output - self.alias + self.temp + self.code


@dataclasses.dataclass(frozen=True)
class StepReport:
  """One compiled step on one target. When the compiler refused the program for lack of memory,
  `memory` is None, `refusal` its message, and `needed_bytes` what the message says it needs
  (the temporaries plus our count of the arguments when it names the temporaries only)."""
  memory: Memory | None
  needed_bytes: float
  limit_bytes: float
  flops: float | None  # the compiler's count per chip, one step
  bytes_accessed: float | None
  compile_seconds: float
  refusal: str = ""
  hlo: str = dataclasses.field(default="", repr=False)

  @property
  def fits(self) -> bool:
    return self.memory is not None and self.needed_bytes <= self.limit_bytes


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a config spreads over the target: mesh sizes and sequences per chip per microbatch."""
  mesh: tuple  # (data, fsdp, tensor)
  grad_accum_steps: int
  remat: str
  attention: str
  chip_batch: int  # sequences per chip per microbatch

  def describe(self) -> str:
    data, fsdp, tensor = self.mesh
    return (f"mesh data={data} fsdp={fsdp} tensor={tensor}, remat={self.remat}, "
            f"attention={self.attention}, {self.chip_batch} seq/chip x {self.grad_accum_steps} "
            "microbatch(es)")


def layout(config, target: Target) -> Layout:
  """Where `config` puts things on `target` (the attention kernel as resolved there)."""
  mesh = sharding.mesh_shape(config.train, target.num_chips)
  batch_ways = mesh[0] * mesh[1]
  accum = config.train.grad_accum_steps
  m = config.model
  attention = _resolved_attention(m, target.platform)
  return Layout(mesh, accum, m.remat, attention, config.train.batch_size // accum // batch_ways)


def _resolved_attention(m, platform: str) -> str:
  return attention.resolve(m.attention, m.compute_dtype, m.dim // m.num_heads, platform=platform)


def _abstract(tree, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


def _bytes_per_chip(tree) -> int:
  """Bytes of one device's shards of abstract arrays that carry shardings."""
  return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
             for x in jax.tree.leaves(tree))


def _refused(error: Exception, argument_bytes: int, seconds: float) -> StepReport | None:
  """The report of a compile refused for lack of memory, or None for any other error."""
  message = str(error)
  for pattern, counts in _REFUSALS:
    if found := pattern.search(message):
      needed = float(found[1]) * _UNITS[found[2]]
      limit = float(found[3]) * _UNITS[found[4]]
      if counts == "temp":
        needed += argument_bytes
      line = next(l for l in message.splitlines() if found[0] in l)
      return StepReport(None, needed, limit, None, None, seconds, refusal=line.strip())
  return None


def _compile(lowered_fn, arguments, limit_bytes: float, keep_hlo: bool) -> StepReport:
  start = time.perf_counter()
  try:
    compiled = lowered_fn().compile()
  except Exception as error:  # pylint: disable=broad-except  (XlaRuntimeError and kin)
    report = _refused(error, _bytes_per_chip(arguments), time.perf_counter() - start)
    if report is None:
      raise
    return report
  seconds = time.perf_counter() - start
  stats = compiled.memory_analysis()
  memory = Memory(stats.argument_size_in_bytes, stats.output_size_in_bytes,
                  stats.alias_size_in_bytes, stats.temp_size_in_bytes,
                  stats.generated_code_size_in_bytes)
  cost = compiled.cost_analysis() or {}
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return StepReport(memory, memory.total, limit_bytes, cost.get("flops"),
                    cost.get("bytes accessed"), seconds,
                    hlo=compiled.as_text() if keep_hlo else "")


def compile_steps(config, target: Target, *, steps=("train", "eval"),
                  keep_hlo: bool = False) -> dict:
  """{'layout': Layout} and a StepReport per step named in `steps` ('train', 'eval') of `config`
  compiled for `target`. Config errors (ConfigError) surface before anything compiles."""
  validate(config)
  validate_platform(config, target.platform)
  mesh = sharding.make_mesh(config.train, list(target.devices))
  sharding.check_batch_divides(config.train, mesh)
  limit = target.chip.hbm_bytes
  graphdef, abstract_state = nnx.split(nnx.eval_shape(lambda: build_model(config.model)))
  param_shardings = sharding.param_shardings(abstract_state, mesh)
  params = _abstract(nnx.to_pure_dict(abstract_state), param_shardings)
  num_steps = total_steps(config)
  optimizer = make_optimizer(config.optim, num_steps)
  shardings = train_step.state_shardings(params, optimizer, param_shardings, mesh)
  state = _abstract(jax.eval_shape(lambda p: train_step.init_train_state(p, optimizer), params),
                    shardings)
  batch_sharding = sharding.batch_sharding(mesh)
  tokens = jax.ShapeDtypeStruct((config.train.batch_size, config.data.seq_len), jnp.int32,
                                sharding=batch_sharding)
  batch = {"inputs": tokens, "targets": tokens}
  step = train_step.jit_train_step(
      mesh, shardings, batch_sharding, graphdef=graphdef,
      optimizer=optimizer, schedule=lr_schedule(config.optim, num_steps),
      grad_accum_steps=config.train.grad_accum_steps)
  reports = {"layout": layout(config, target)}
  if "train" in steps:
    reports["train"] = _compile(lambda: step.lower(state, batch), (state, batch), limit, keep_hlo)
  if "eval" in steps:
    evaluate = train_step.jit_eval_step(mesh, graphdef=graphdef)
    reports["eval"] = _compile(lambda: evaluate.lower(state["params"], batch),
                               (state["params"], batch), limit, keep_hlo)
  return reports


_COLLECTIVE = re.compile(r"^\s*(?:ROOT )?%\S+ = (.+?) ((?:all-gather|all-reduce|reduce-scatter|"
                         r"all-to-all|collective-permute)(?:-start|-done)?)\(")
_SHAPE = re.compile(r"(\w+)\[([\d,]*)\]")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%(\S+) ")
# The TPU compiler's reduce-scatter: an all-reduce and the slice of this device's shard fused
# into one collective ("AllReduceScatter" fusion), called from the program like any fusion.
_FUSED_REDUCE_SCATTER = re.compile(
    r"^\s*(?:ROOT )?%\S+ = (.+?) fusion\(.*calls=%all-reduce-scatter")


def collectives(hlo_text: str) -> list:
  """(op, dtype, dims) of every collective in a compiled program's text, one per result array
  (a combined all-reduce of a tuple gives one entry per element). The TPU compiler's fused
  reduce-scatters count as 'reduce-scatter' with their shards' shapes, not as the all-reduce
  inside them."""
  found, fused = [], False
  for line in hlo_text.splitlines():
    if computation := _COMPUTATION.match(line):
      fused = computation[1].startswith("all-reduce-scatter")
    if match := _FUSED_REDUCE_SCATTER.match(line):
      op, shapes = "reduce-scatter", match[1]
    elif not fused and (match := _COLLECTIVE.match(line)):
      op, shapes = match[2], match[1]
    else:
      continue
    for dtype, dims in _SHAPE.findall(shapes):
      found.append((op, dtype, tuple(int(d) for d in dims.split(",") if d)))
  return found


ASSUMED_MFU = 0.40  # for time estimates; launch.ASSUMED_ACCELERATOR assumes the same on A100s


def executed_flops_per_token(config) -> float:
  """Training FLOPs per token the chips execute: our model count (model/counting.py, PaLM's
  convention) plus what rematerialisation recomputes: 'full' runs every block's forward pass
  again (a third of its training FLOPs), 'dots' its attention scores and values (the matmuls with
  a batch axis, which that policy does not save)."""
  m, seq_len = config.model, config.data.seq_len
  model = counting.flops_per_token(m, seq_len)
  depth = counting.effective_depth(m)
  attention_forward = 4 * depth * m.dim * seq_len
  if m.remat == "full":
    head_forward = 2 * m.dim * m.vocab_size
    return model + (model / 3 - head_forward)
  if m.remat == "dots":
    return model + attention_forward
  return model


@dataclasses.dataclass(frozen=True)
class Estimate:
  """Step time per chip, estimated from the datasheet peak (not measured): `roofline_seconds`
  is the executed FLOPs at 100% of peak (a lower bound; compute only, since XLA's byte counts
  see each loop body once), `seconds` the same at ASSUMED_MFU of peak."""
  roofline_seconds: float
  seconds: float
  model_flops_per_chip: float
  executed_flops_per_chip: float

  @property
  def mfu_bound(self) -> float:
    """The MFU at the roofline: model FLOPs over executed FLOPs (remat lowers it)."""
    return self.model_flops_per_chip / self.executed_flops_per_chip


def estimate(config, target: Target) -> Estimate | None:
  """None without a datasheet peak (CPU targets)."""
  peak = target.chip.peak_flops
  if not peak:
    return None
  tokens_per_chip = config.train.batch_size * config.data.seq_len / target.num_chips
  model = counting.flops_per_token(config.model, config.data.seq_len) * tokens_per_chip
  executed = executed_flops_per_token(config) * tokens_per_chip
  return Estimate(executed / peak, executed / (peak * ASSUMED_MFU), model, executed)
