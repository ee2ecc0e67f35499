"""One training run: `train(config, workdir) -> summary`.

Re-running with the same workdir resumes from the newest restorable checkpoint (data iterator
included) and ends with the numbers an uninterrupted run would have had.
"""

import math
import os
import platform
import time

import jax

from mobilellm_jax.accelerators import peaks
from mobilellm_jax.model import counting, footprint
from mobilellm_jax.training import (checkpointing, distributed, sharding, step as train_step,
                                    target, tracking)
from mobilellm_jax.configs import ConfigError, eval_task_names, validate, validate_platform
from mobilellm_jax.data import (check_eval_split, load_tokenizer, make_eval_iterator,
                                make_train_iterator)
from mobilellm_jax.model import build_model
from mobilellm_jax.training.optim import lr_schedule, make_optimizer


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or Inf; the message names the step."""


def total_steps(config) -> int:
  """train.num_steps, or enough steps to see train.num_tokens."""
  if config.train.num_steps:
    return config.train.num_steps
  return math.ceil(config.train.num_tokens / (config.train.batch_size * config.data.seq_len))


def source_revision() -> dict:
  """The git commit of this package's source tree and whether it had uncommitted changes to
  tracked files ({} outside a git checkout, e.g. a wheel install)."""
  import os  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True, timeout=10).stdout.strip()
    changes = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, check=True, timeout=10).stdout
  except (OSError, subprocess.SubprocessError):
    return {}
  return dict(commit=commit, dirty=bool(changes.strip()))


# Read when this module is imported: the code this process trains with, even if the checkout
# changes while a long sweep runs.
_REVISION = source_revision()


def _versions(revision: dict) -> dict:
  import flax, optax, orbax.checkpoint  # pylint: disable=import-outside-toplevel,multiple-imports
  return dict(**revision, jax=jax.__version__, flax=flax.__version__, optax=optax.__version__,
              orbax=orbax.checkpoint.__version__, python=platform.python_version(),
              backend=target.process_platform(), devices=jax.device_count(),
              processes=jax.process_count())


class _Evaluator:
  """Validation loss over the first `max_batches` batches of the eval split (all when None)."""

  def __init__(self, config, graphdef, batch_sharding):
    self.config, self.batch_sharding = config, batch_sharding
    self._step = train_step.jit_eval_step(batch_sharding.mesh, graphdef=graphdef)

  def __call__(self, params, max_batches=None) -> dict:
    loss_sum, count = 0.0, 0.0
    for batch in make_eval_iterator(self.config, process_index=jax.process_index(),
                                    process_count=jax.process_count(), max_batches=max_batches):
      batch = {k: jax.make_array_from_process_local_data(self.batch_sharding, v)
               for k, v in batch.items()}
      batch_loss, batch_count = self._step(params, batch)
      loss_sum, count = loss_sum + float(batch_loss), count + float(batch_count)
    loss = loss_sum / count
    return dict(val_loss=loss, val_perplexity=math.exp(min(loss, 50.0)), val_tokens=int(count))


def zeroshot_summary(model, config, tokenizer, tracker=None) -> dict:
  """config.eval.tasks scored on the trained model: {'tasks': {task: {acc, acc_norm, chance,
  num_questions}}, 'avg_acc', 'avg_acc_norm', 'avg_chance'}; {} when no tasks are set."""
  if not eval_task_names(config):
    return {}
  if jax.process_count() > 1:  # scoring feeds host arrays to one process's devices
    if tracker:
      tracker.print("zero-shot skipped: multi-process run; use experiments/evaluate.py --workdir")
    return {}
  from mobilellm_jax.evaluation import zeroshot_from_config  # pylint: disable=import-outside-toplevel
  result = zeroshot_from_config(model, config, tokenizer)
  return dict(tasks={k: v for k, v in result.items() if isinstance(v, dict)},
              **{k: v for k, v in result.items() if not isinstance(v, dict)})


def restore_for_eval(workdir: str):
  """(config, graphdef, params, step) of a run's newest restorable checkpoint, on one device."""
  import json  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  path = f"{workdir}/config.json"
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(json.load(f))
  except OSError:
    raise checkpointing.CheckpointError(f"{path} not found: is {workdir} a run directory?") from None
  graphdef, abstract_params = nnx.split(nnx.eval_shape(lambda: build_model(config.model)))
  abstract_params = nnx.to_pure_dict(abstract_params)
  optimizer = make_optimizer(config.optim, total_steps(config))
  abstract = jax.eval_shape(lambda p: train_step.init_train_state(p, optimizer), abstract_params)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract)
  checkpointer = checkpointing.Checkpointer(workdir, config.train.keep_checkpoints)
  try:
    step, state = checkpointer.restore_state(abstract)
  finally:
    checkpointer.close()
  return config, graphdef, state["params"], step


def train(config, workdir: str, devices=None, restart: bool = False) -> dict:
  """Trains one model; writes config.json, metrics.jsonl, checkpoints/ and summary.json.
  `devices` (default: all) lets tests compare meshes inside one process. `restart` moves what
  the workdir holds to `previous-<time>/` and starts from step 0; without it a workdir whose
  progress cannot be restored stops the run (CheckpointError) rather than being overwritten."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"the workdir {workdir} is a file; give a directory (created if missing)")
  hf_params = None
  if config.train.get("init_from_hf"):  # the model section comes from the directory
    from mobilellm_jax.hf import init_from_hf  # pylint: disable=import-outside-toplevel
    config, hf_params = init_from_hf(config)
  validate(config)
  distributed.maybe_initialize()  # before anything asks for a backend (the platform check does)
  validate_platform(config, target.platform_of(devices))
  started = time.time()
  revision = _REVISION
  num_steps = total_steps(config)
  tokenizer = load_tokenizer(config)  # fails early (with what to run) on a missing corpus or vocab mismatch
  data_iter = make_train_iterator(config, process_index=jax.process_index(),
                                  process_count=jax.process_count())
  check_eval_split(config)  # the final evaluations must not fail after the whole run
  if jax.process_count() == 1:  # where zeroshot_summary scores them
    for task in eval_task_names(config):
      from mobilellm_jax.evaluation.tasks import prepared_path  # pylint: disable=import-outside-toplevel
      prepared_path(task, config.data.data_dir or None)

  mesh = sharding.make_mesh(config.train, devices)
  sharding.check_batch_divides(config.train, mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  optimizer = make_optimizer(config.optim, num_steps)
  schedule = lr_schedule(config.optim, num_steps)
  graphdef, params, param_shardings = sharding.init_sharded(
      lambda: build_model(config.model, seed=config.train.seed), mesh)
  if hf_params is not None:
    from mobilellm_jax.hf.runs import place  # pylint: disable=import-outside-toplevel
    params = place(hf_params, param_shardings)
  state_shardings = train_step.state_shardings(params, optimizer, param_shardings, mesh)
  state = jax.jit(lambda p: train_step.init_train_state(p, optimizer),
                  out_shardings=state_shardings)(params)

  if restart and jax.process_index() == 0:
    moved = checkpointing.set_aside(workdir)
    if moved:
      print(f"--restart: the previous files of {workdir} are in {moved}; training from step 0")
  distributed.barrier("restart")
  checkpointer = checkpointing.Checkpointer(workdir, config.train.keep_checkpoints)
  restored = checkpointer.restore_latest(state, data_iter)
  meta = dict(tokens_seen=0, timed_tokens=0, train_seconds=0.0)
  if restored is not None:
    state, meta = restored
  elif progress := checkpointing.unrestorable_progress(workdir):
    checkpointer.close()
    raise checkpointing.CheckpointError(
        f"{workdir} holds a run that got past step 0 ({progress}) but no checkpoint restores; "
        "nothing was trained or overwritten. Rerun with --restart to start over from step 0 "
        f"(the old files move to {workdir}/previous-<time>/), or put a good checkpoint back in "
        f"{checkpointer.directory}")
  start_step = int(state["step"])

  step_fn = train_step.jit_train_step(
      mesh, state_shardings, batch_sharding, graphdef=graphdef, optimizer=optimizer,
      schedule=schedule, grad_accum_steps=config.train.grad_accum_steps)
  evaluate = _Evaluator(config, graphdef, batch_sharding)

  counts = counting.param_counts(config.model)
  flops_per_token = counting.flops_per_token(config.model, config.data.seq_len)
  peak_flops, peak_source = peaks.machine_peak_flops()
  tokens_per_step = config.train.batch_size * config.data.seq_len
  tracker = tracking.Tracker(config, workdir, total_steps=num_steps, start_step=start_step,
                             active=jax.process_index() == 0)
  tracker.print(f"{tracking.run_name(config)}: {counts['params']:,} params, "
                f"{counting.effective_depth(config.model)} effective layers, {num_steps} steps x "
                f"{tokens_per_step:,} tokens" + (f"; resumed at step {start_step}" if start_step else ""))

  def check_finite():
    bad = int(state["first_bad_step"])
    if bad >= 0:
      raise NonFiniteLossError(
          f"loss became NaN/Inf at step {bad}; stopped. The last good checkpoint (if any) is in "
          f"{checkpointer.directory}; lower optim.peak_lr or raise optim.warmup_steps.")

  def save(step):
    check_finite()  # never checkpoint a diverged state
    checkpointer.save(step, state, data_iter, dict(meta, saved_at=time.time()))

  window_start, window_steps, train_seconds = time.perf_counter(), 0, meta["train_seconds"]
  metrics, last_val, first_step_seconds = {}, {}, None
  try:
    for step in range(start_step + 1, num_steps + 1):
      local = next(data_iter)
      batch = {k: jax.make_array_from_process_local_data(batch_sharding, v) for k, v in local.items()}
      state, metrics = step_fn(state, batch)
      meta["tokens_seen"] += tokens_per_step
      window_steps += 1
      if step == start_step + 1:  # the first step compiles: keep it out of throughput
        jax.block_until_ready(metrics)
        first_step_seconds = time.perf_counter() - window_start
        tracker.print(f"step {step} (compiling the train step) took {first_step_seconds:.1f} s")
        window_start, window_steps = time.perf_counter(), 0
      if step % config.train.log_every == 0 or step == num_steps:
        metrics = jax.device_get(metrics)
        check_finite()
        now = time.perf_counter()
        elapsed = now - window_start
        logged = {k: float(v) for k, v in metrics.items()}
        if window_steps:
          train_seconds += elapsed
          meta["timed_tokens"] += window_steps * tokens_per_step
          tokens_per_s = window_steps * tokens_per_step / elapsed
          logged.update(step_time=elapsed / window_steps, tokens_per_s=tokens_per_s,
                        mfu=flops_per_token * tokens_per_s / peak_flops)
        logged["tokens_seen"] = meta["tokens_seen"]
        tracker.log(step, logged)
        window_start, window_steps = time.perf_counter(), 0
      if config.train.eval_every and step % config.train.eval_every == 0 and step < num_steps:
        jax.block_until_ready(state)  # the steps before the eval are training time
        eval_started = time.perf_counter()
        last_val = evaluate(state["params"], max_batches=config.train.eval_batches)
        tracker.log(step, last_val)
        window_start += time.perf_counter() - eval_started  # eval time is not training time
      if config.train.checkpoint_every and step % config.train.checkpoint_every == 0:
        meta["train_seconds"] = train_seconds
        save(step)
    meta["train_seconds"] = train_seconds
    check_finite()
    every = config.train.checkpoint_every
    if start_step < num_steps and not (every and num_steps % every == 0):
      save(num_steps)  # the final state, unless the loop just saved it
    final_val = evaluate(state["params"])  # the whole validation split
    tracker.log(num_steps, final_val)
    zeroshot = zeroshot_summary((graphdef, state["params"]), config, tokenizer, tracker)
    checkpointer.wait()
  except BaseException:
    checkpointer.wait()  # a checkpoint already being written is finished, not lost
    tracker.abort()
    raise
  finally:
    checkpointer.close()

  tokens_per_s = meta["timed_tokens"] / train_seconds if train_seconds else None
  summary = dict(
      name=tracking.run_name(config), group=config.tracking.group, label=config.tracking.label,
      preset=config.preset,
      params=counts["params"], non_embedding_params=counts["non_embedding_params"],
      num_layers=config.model.num_layers, effective_depth=counting.effective_depth(config.model),
      dim=config.model.dim, num_heads=config.model.num_heads,
      num_kv_heads=config.model.num_kv_heads, ffn_type=config.model.ffn_type,
      tie_embeddings=config.model.tie_embeddings, layer_sharing=config.model.layer_sharing,
      share_repeats=config.model.share_repeats, seed=config.train.seed,
      flops_per_token=flops_per_token, steps=num_steps, tokens_seen=meta["tokens_seen"],
      train_flops=flops_per_token * meta["tokens_seen"],
      final_train_loss=float(metrics["loss"]) if metrics else None,
      **final_val, tokens_per_s=tokens_per_s,
      mfu=flops_per_token * tokens_per_s / peak_flops if tokens_per_s else None,
      peak_flops=peak_flops, peak_source=peak_source, train_seconds=train_seconds,
      first_step_seconds=first_step_seconds,
      wall_seconds=time.time() - started, versions=_versions(revision),
      zeroshot=zeroshot, tokenizer=dict(path=tokenizer.path, sha256=tokenizer.sha256),
      device=footprint.device_footprint(config.model))
  tracker.finish(summary)
  return summary
