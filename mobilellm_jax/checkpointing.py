"""Orbax checkpoints of one run: train state (params, optimizer state, step), the data iterator's
state and a little JSON (tokens seen, wall time), in `workdir/checkpoints/<step>/`.

Orbax writes each step to a temporary folder and renames it when complete, so a run killed
mid-save leaves no half-visible step. A step that is visible but cannot be restored (damaged
files) is moved aside to `<step>.damaged` with a warning, and the previous step is used.
"""

import logging
import os

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
    None when there is no checkpoint. `abstract_state` gives shapes, dtypes and shardings."""
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
    if steps:
      raise CheckpointError(f"none of the checkpoints {steps} in {self.directory} could be restored")
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
