"""Multi-process start-up: the same command runs on one host or many."""

import os

import jax


def multiprocess_environment() -> bool:
  """True under a TPU pod, a multi-task SLURM job, or explicit coordinator variables."""
  env = os.environ
  slurm = int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in env
  tpu_pod = len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1
  return bool(env.get("JAX_COORDINATOR_ADDRESS")) or slurm or tpu_pod


def maybe_initialize() -> None:
  """`jax.distributed.initialize()` once, when a multi-process environment is present.

  With JAX_COORDINATOR_ADDRESS set, JAX_NUM_PROCESSES and JAX_PROCESS_ID give this process's place
  (jax auto-detects them under SLURM and on TPU pods). CPU processes exchange data over gloo.
  """
  if jax.distributed.is_initialized() or not multiprocess_environment():
    return
  kwargs = {}
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                  process_id=int(os.environ["JAX_PROCESS_ID"]))
  if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (a no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)
