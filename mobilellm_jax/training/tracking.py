"""Where a run's numbers go: `metrics.jsonl` + `summary.json` in the workdir (always), W&B
(offline by default: no account needed; `wandb sync <workdir>/wandb/offline-run-*` uploads later;
what a dashboard needs of the run is in dashboards.py), and a progress bar on a terminal."""

import json
import os
import secrets
import sys
import time

import tqdm

from mobilellm_jax.training import dashboards


def run_name(config) -> str:
  """A name that says the run's point, e.g. L30-d576-h9kv3-share_immediate2-s0."""
  if config.tracking.run_name:
    return config.tracking.run_name
  m = config.model
  sharing = "none" if m.layer_sharing == "none" else f"{m.layer_sharing}{m.share_repeats}"
  extras = ("" if m.ffn_type == "swiglu" else f"-{m.ffn_type}") + (
      "" if m.tie_embeddings else "-untied")
  return (f"L{m.num_layers}-d{m.dim}-h{m.num_heads}kv{m.num_kv_heads}-share_{sharing}{extras}"
          f"-s{config.train.seed}")


def write_json(path: str, value) -> None:
  """Atomic: a crash mid-write never leaves a truncated file behind."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, default=str)
  os.replace(tmp, path)


class Tracker:
  """One run's logging. Only process 0 writes; other processes get a silent tracker."""

  def __init__(self, config, workdir: str, *, total_steps: int, start_step: int, active: bool):
    self.workdir, self.active = workdir, active
    self._tokens_per_step = config.train.batch_size * config.data.seq_len
    self._wandb = None
    self._bar = None
    if not active:
      return
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "config.json"), config.to_dict())
    self._metrics_path = os.path.join(workdir, "metrics.jsonl")
    self._drop_lines_after(start_step)  # a resumed run rewrites the steps after its checkpoint
    if config.tracking.wandb_mode != "disabled":
      self._wandb = self._start_wandb(config, workdir, total_steps)
    self._bar = tqdm.tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                          disable=not sys.stderr.isatty(), desc=run_name(config))

  def _drop_lines_after(self, step: int) -> None:
    if not os.path.exists(self._metrics_path):
      return
    with open(self._metrics_path) as f:
      kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
    with open(self._metrics_path, "w") as f:
      f.writelines(kept)

  @staticmethod
  def _start_wandb(config, workdir: str, total_steps: int):
    import wandb  # pylint: disable=import-outside-toplevel  (slow import; not needed when disabled)
    id_path = os.path.join(workdir, "wandb_id")
    if os.path.exists(id_path):  # same W&B run across restarts
      with open(id_path) as f:
        run_id = f.read().strip()
    else:
      run_id = secrets.token_hex(4)
      with open(id_path, "w") as f:
        f.write(run_id)
    name = run_name(config)
    columns = dashboards.run_columns(config, total_steps, name)
    run = wandb.init(project=config.tracking.project, name=name, id=run_id, resume="allow",
                     group=config.tracking.group or None, job_type="train",
                     tags=dashboards.run_tags(config), mode=config.tracking.wandb_mode, dir=workdir,
                     config={**config.to_dict(), **columns})
    dashboards.define_metrics(run)
    return run

  def log(self, step: int, metrics: dict) -> None:
    if not self.active:
      return
    line = {"step": step, "time": time.time(), **metrics}
    with open(self._metrics_path, "a") as f:
      f.write(json.dumps(line) + "\n")
    if self._wandb is not None:  # every row has its x-axis, eval rows between logged steps too
      self._wandb.log({dashboards.STEP_METRIC: step * self._tokens_per_step, **metrics}, step=step)
    if self._bar is not None:
      self._bar.n = step
      shown = {k: metrics[k] for k in ("loss", "val_loss", "tokens_per_s") if k in metrics}
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=True)

  def print(self, message: str) -> None:
    """A line for the user: above the bar on a terminal, plain stdout otherwise."""
    if self.active:
      tqdm.tqdm.write(message, file=sys.stdout)

  def finish(self, summary: dict) -> None:
    if not self.active:
      return
    write_json(os.path.join(self.workdir, "summary.json"), summary)
    if self._bar is not None:
      self._bar.close()
    if self._wandb is not None:
      self._wandb.summary.update({k: v for k, v in summary.items()  # W&B summarises the others
                                  if not isinstance(v, dict) and k not in dashboards.SUMMARISED})
      self._wandb.finish()

  def abort(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._wandb is not None:
      self._wandb.finish(exit_code=1)
