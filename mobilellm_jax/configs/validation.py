"""`validate(config)`: every check that can fail before anything compiles, each naming its field."""

import ml_collections

SHARING_STRATEGIES = ("none", "immediate", "repeat_all", "reverse")
FFN_TYPES = ("swiglu", "relu")
DTYPES = ("float32", "bfloat16")
INIT_SCHEMES = ("fixed", "fan_in", "fan_in_depth")
REMAT_POLICIES = ("none", "full", "dots")
ATTENTION_IMPLEMENTATIONS = ("auto", "fused_cpu", "blocked", "xla", "cudnn", "pallas_tpu")
WANDB_MODES = ("offline", "online", "disabled")


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field and what is allowed."""


def eval_task_names(config) -> list[str]:
  """The zero-shot tasks named in config.eval.tasks (comma-separated; '' = none), as written."""
  return [t for t in config.eval.tasks.split(",") if t.strip()]


def _require(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise ConfigError(f"config.{field}: {message}")


def _positive(config, section: str, *names: str) -> None:
  for name in names:
    value = config[section][name]
    _require(isinstance(value, int) and value > 0, f"{section}.{name}",
             f"must be a positive integer, got {value!r}")


def _one_of(config, section: str, name: str, allowed) -> None:
  value = config[section][name]
  _require(value in allowed, f"{section}.{name}", f"must be one of {list(allowed)}, got {value!r}")


def validate_model(m: ml_collections.ConfigDict) -> None:
  """Checks the model section alone (the width solver and HF import use this too)."""
  config = {"model": m}
  _positive(config, "model", "dim", "num_layers", "num_heads", "num_kv_heads", "ffn_dim",
            "max_seq_len", "share_repeats")
  _require(isinstance(m.vocab_size, int) and m.vocab_size >= 2, "model.vocab_size",
           f"must be an integer >= 2, got {m.vocab_size!r}")
  _require(m.dim % m.num_heads == 0, "model.dim",
           f"must be divisible by model.num_heads ({m.num_heads}), got {m.dim}")
  _require(m.num_heads % m.num_kv_heads == 0, "model.num_kv_heads",
           f"must divide model.num_heads ({m.num_heads}), got {m.num_kv_heads}")
  head_dim = m.dim // m.num_heads
  _require(head_dim % 2 == 0, "model.num_heads",
           f"head_dim = dim/num_heads = {m.dim}/{m.num_heads} = {head_dim} must be even for RoPE")
  _one_of(config, "model", "ffn_type", FFN_TYPES)
  _one_of(config, "model", "layer_sharing", SHARING_STRATEGIES)
  _require(m.layer_sharing != "none" or m.share_repeats == 1, "model.share_repeats",
           f"must be 1 when model.layer_sharing is 'none', got {m.share_repeats}")
  _one_of(config, "model", "param_dtype", DTYPES)
  _one_of(config, "model", "compute_dtype", DTYPES)
  _one_of(config, "model", "remat", REMAT_POLICIES)
  if "init_scheme" in m:  # absent from configs saved before it existed ('fixed')
    _one_of(config, "model", "init_scheme", INIT_SCHEMES)
  _one_of(config, "model", "attention", ATTENTION_IMPLEMENTATIONS)
  _positive(config, "model", "attention_block")
  _require(isinstance(m.get("unroll_max_depth", 0), int) and m.get("unroll_max_depth", 0) >= 0,
           "model.unroll_max_depth",
           f"must be an integer >= 0, got {m.get('unroll_max_depth')!r}")
  for name in ("rope_theta", "norm_eps", "init_std"):
    _require(m[name] > 0, f"model.{name}", f"must be > 0, got {m[name]!r}")


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Raises ConfigError on the first bad field; returns the config unchanged when it is sound."""
  validate_model(config.model)
  _positive(config, "data", "seq_len")
  _require(config.data.seq_len <= config.model.max_seq_len, "data.seq_len",
           f"must be <= model.max_seq_len ({config.model.max_seq_len}), got {config.data.seq_len}")
  _require(config.data.num_workers >= 0, "data.num_workers", "must be >= 0")
  _positive(config, "train", "batch_size", "grad_accum_steps", "log_every", "eval_batches",
            "keep_checkpoints")
  t = config.train
  _require(t.batch_size % t.grad_accum_steps == 0, "train.batch_size",
           f"must be divisible by train.grad_accum_steps ({t.grad_accum_steps}), got {t.batch_size}")
  _require(t.num_steps >= 0 and t.num_tokens >= 0, "train.num_steps",
           "train.num_steps and train.num_tokens must be >= 0")
  _require(t.num_steps > 0 or t.num_tokens > 0, "train.num_steps",
           "set train.num_steps or train.num_tokens to a positive budget")
  for name in ("eval_every", "checkpoint_every"):
    _require(t[name] >= 0, f"train.{name}", f"must be >= 0, got {t[name]}")
  for name in ("mesh_data", "mesh_fsdp", "mesh_tensor"):
    _require(t[name] == -1 or t[name] >= 1, f"train.{name}", f"must be -1 (fill) or >= 1, got {t[name]}")
  _require([t.mesh_data, t.mesh_fsdp, t.mesh_tensor].count(-1) <= 1, "train.mesh_data",
           "at most one of train.mesh_data/mesh_fsdp/mesh_tensor may be -1")
  o = config.optim
  _require(o.peak_lr > 0, "optim.peak_lr", f"must be > 0, got {o.peak_lr}")
  _require(o.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {o.warmup_steps}")
  _require(0 <= o.final_lr_ratio <= 1, "optim.final_lr_ratio", f"must be in [0, 1], got {o.final_lr_ratio}")
  _require(0 <= o.b1 < 1 and 0 <= o.b2 < 1, "optim.b1", "optim.b1 and optim.b2 must be in [0, 1)")
  _require(o.weight_decay >= 0 and o.grad_clip >= 0, "optim.weight_decay",
           "optim.weight_decay and optim.grad_clip must be >= 0")
  _one_of(config, "tracking", "wandb_mode", WANDB_MODES)
  _positive(config, "eval", "batch_size")
  _require(config.eval.max_examples >= 0, "eval.max_examples",
           f"must be >= 0 (0 = all), got {config.eval.max_examples}")
  for task in eval_task_names(config):  # imported here, only when needed: it loads grain
    from mobilellm_jax.evaluation.tasks import canonical_name  # pylint: disable=import-outside-toplevel
    try:
      canonical_name(task)
    except ValueError as error:
      raise ConfigError(f"config.eval.tasks: {error}") from None
  return config


def validate_platform(config: ml_collections.ConfigDict, platform: str) -> None:
  """Raises ConfigError when a model setting cannot run on `platform` ('cpu', 'gpu', 'tpu'): an
  attention kernel for another platform, dtype or head size. train() calls it before anything
  is initialised or written."""
  from mobilellm_jax.ops import attention  # pylint: disable=import-outside-toplevel  (imports jax)
  m = config.model
  try:
    attention.resolve(m.attention, m.compute_dtype, m.dim // m.num_heads, platform=platform)
  except ValueError as error:
    raise ConfigError(str(error)) from None
