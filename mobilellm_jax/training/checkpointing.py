"""Orbax checkpoints of one run: train state (params, optimizer state, step), the data iterator's
state and a little JSON (tokens seen, wall time), in `workdir/checkpoints/<step>/`.

Orbax writes each step to a temporary folder and renames it when complete, so a run killed
mid-save leaves no half-visible step. A step that is visible but cannot be restored (damaged
files) is moved aside to `<step>.damaged` with a warning, and the previous step is used. When no
step restores but the run had made progress, training stops instead of starting over
(`unrestorable_progress`); `set_aside` clears a workdir for a deliberate restart.
"""

import glob
import json
import logging
import os
import time

import grain
import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  """No checkpoint of this run could be restored."""


class Checkpointer:
  """Save/restore for one workdir; keeps the last `keep` steps."""

  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def save(self, step: int, train_state, data_iterator, meta: dict) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(train_state),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        meta=ocp.args.JsonSave(meta)), force=True)

  def restore_latest(self, abstract_state, data_iterator):
    """(train_state, meta) of the newest restorable step (the iterator is restored in place), or
    None when no step restores (damaged ones are moved aside first). `abstract_state` gives
    shapes, dtypes and shardings."""
    steps = sorted(self._manager.all_steps(), reverse=True)
    for step in steps:
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_iterator),
            meta=ocp.args.JsonRestore()))
        return restored["state"], restored["meta"]
      except Exception as error:  # orbax/tensorstore raise many types for damaged files
        self._quarantine(step, error)
    return None

  def restore_state(self, abstract_state):
    """(step, train_state) of the newest step whose state restores (no data iterator needed)."""
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state)))
        return step, restored["state"]
      except Exception as error:  # damaged: say so, try the previous one (nothing is moved here)
        log.warning("checkpoint step %d in %s cannot be restored (%s: %s)", step, self.directory,
                    type(error).__name__, error)
    raise CheckpointError(f"no restorable checkpoint in {self.directory}; train the run first "
                          "(python experiments/train.py --workdir ...)")

  def _quarantine(self, step: int, error: Exception) -> None:
    path = os.path.join(self.directory, str(step))
    target = path + ".damaged"
    suffix = 1
    while os.path.exists(target):
      target, suffix = f"{path}.damaged{suffix}", suffix + 1
    log.warning("checkpoint step %d in %s cannot be restored (%s: %s); moved to %s and trying "
                "the previous one", step, self.directory, type(error).__name__, error, target)
    if jax.process_index() == 0:
      os.rename(path, target)
    self._manager.reload()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def unrestorable_progress(workdir: str) -> str:
  """What shows that the run in `workdir` got past step 0 ('' if nothing does): checkpoints moved
  aside as damaged, or metrics.jsonl lines after step 0. Called when no checkpoint restores."""
  evidence = []
  damaged = sorted(os.path.basename(p) for p in
                   glob.glob(os.path.join(os.path.abspath(workdir), "checkpoints", "*.damaged*")))
  if damaged:
    evidence.append(f"damaged checkpoints {', '.join(damaged)}")
  last_step = 0
  try:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      for line in f:
        try:
          last_step = max(last_step, int(json.loads(line).get("step", 0)))
        except (ValueError, TypeError, AttributeError):
          continue  # a line cut short by a crash
  except OSError:
    pass
  if last_step:
    evidence.append(f"metrics.jsonl up to step {last_step}")
  return "; ".join(evidence)


def set_aside(workdir: str) -> str | None:
  """Moves everything in `workdir` (but earlier set-asides) to `workdir/previous-<UTC time>/`, for
  a deliberate restart from step 0; returns that folder, or None when there was nothing."""
  if not os.path.isdir(workdir):
    return None
  entries = [e for e in os.listdir(workdir) if not e.startswith("previous-")]
  if not entries:
    return None
  target = os.path.join(workdir, "previous-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
  suffix = 1
  while os.path.exists(target):
    target, suffix = f"{target.rsplit('.', 1)[0]}.{suffix}", suffix + 1
  os.makedirs(target)
  for entry in entries:
    os.rename(os.path.join(workdir, entry), os.path.join(target, entry))
  return target
