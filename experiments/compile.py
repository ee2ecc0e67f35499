"""Compile the real train and eval steps for hardware this host does not have, and say whether
they fit in its memory.

    python experiments/compile.py --config=mobilellm_jax/configs/base.py:mobilellm_350m --target=tpu:v5e:4x4
    python experiments/compile.py --config=mobilellm_jax/configs/base.py:mobilellm_125m --target=tpu:v5p:2x2x2 \
        --config.train.batch_size=1024
    python experiments/compile.py --config=mobilellm_jax/configs/base.py:mobilellm_125m --target=gpu:h100x8

Prints per chip the arguments, temporaries and outputs against the chip's memory, the FLOPs the
compiler counts beside ours, and an estimated step time (from the datasheet peak: an estimate,
not a measurement). When the config as given does not fit it compiles other settings (fsdp,
sequences per chip, remat, attention) until one fits, prints its flags, and exits with status 1;
status 2 is a bad config or target.
"""

import os
import sys


def _environment_before_jax(argv) -> None:
  """Compile-only targets need no accelerator in this process: keep JAX on the CPU (unless the
  target is this host's own devices), with as many CPU devices as a cpu:N target names."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--target=")), "")
  if "--target" in argv[:-1]:
    spec = argv[argv.index("--target") + 1]
  if spec != "local":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
  if spec.startswith("cpu:") and spec[4:].isdigit():
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={spec[4:]}").strip()


_environment_before_jax(sys.argv)

# pylint: disable=wrong-import-position
from absl import app, flags
from ml_collections import config_flags

from mobilellm_jax.accelerators import aot, chips, fit_report, fit_search
from mobilellm_jax.training import runtime
from mobilellm_jax.configs import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config", "mobilellm_jax/configs/base.py:cpu", "Config file, with ':<preset>'.",
    lock_config=True)
_TARGET = flags.DEFINE_string(
    "target", None, "What to compile for: " + ", ".join(chips.TARGET_FORMS) +
    "; e.g. tpu:v5e:4x4, tpu:v5p:2x2x2, tpu:v4:2x2x4, cpu:8, gpu:h100x8 (needs the optional "
    "CUDA compiler: jax[cuda12], no GPU).", required=True)
_MAX_COMPILES = flags.DEFINE_integer(
    "max_compiles", 24, "At most this many other settings are compiled when the given one does "
    "not fit.")


def main(argv):
  del argv
  config = _CONFIG.value
  try:
    target = chips.parse(_TARGET.value)
    print(f"compiling for {fit_report.target_line(target)}; one line per setting tried",
          flush=True)
    search = fit_search.search(config, target, max_compiles=_MAX_COMPILES.value,
                               log=lambda trial: print(fit_report.trial_line(trial), flush=True))
    eval_report = None
    if search.fitting is not None:
      fitted = fit_search.with_overrides(config, search.fitting.overrides)
      eval_report = aot.compile_steps(fitted, target, steps=("eval",))["eval"]
  except (ConfigError, chips.TargetError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(fit_report.describe(config, target, search, eval_report))
  return 0 if search.given.report.fits else 1


if __name__ == "__main__":
  app.run(main, flags_parser=runtime.parse_config_flags)  # bad --config: one error line
