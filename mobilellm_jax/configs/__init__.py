"""Config schema (base.py), presets and validation."""

from mobilellm_jax.configs.base import get_config
from mobilellm_jax.configs.presets import PRESETS
from mobilellm_jax.configs.validation import (ConfigError, eval_task_names, validate,
                                               validate_model, validate_platform)
