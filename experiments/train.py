"""Train one model.

    python experiments/train.py --config=mobilellm_jax/configs/base.py:cpu --workdir=runs/one \
        --config.model.num_layers=12 --config.train.num_tokens=2000000

Prepares the corpus, its tokenizer and the zero-shot tasks the config needs on first use.
Re-running the same command resumes from the newest checkpoint in --workdir; --restart sets
the workdir's files aside and starts from step 0.
"""

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from mobilellm_jax.training import distributed, runtime
from mobilellm_jax.training.checkpointing import CheckpointError
from mobilellm_jax.configs import ConfigError
from mobilellm_jax.data import DataError
from mobilellm_jax.runner.launch import ensure_data
from mobilellm_jax.training.loop import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", "mobilellm_jax/configs/base.py:cpu", "Config file, with ':<preset>'.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created; resumed if present).",
                               required=True)
_RESTART = flags.DEFINE_bool("restart", False, "Move the workdir's files to previous-<time>/ and "
                             "train from step 0 (e.g. when no checkpoint can be restored).")


def main(argv):
  del argv
  runtime.prepare_process()
  try:
    if not distributed.multiprocess_environment():  # hosts of one job would race to build it
      ensure_data([_CONFIG.value])
    summary = train(_CONFIG.value, _WORKDIR.value, restart=_RESTART.value)
  except (ConfigError, DataError, CheckpointError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=1))
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=runtime.parse_config_flags)
