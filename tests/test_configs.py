"""Config schema, presets and validation: every bad value fails early and names its field."""

import pytest

from mobilellm_jax.configs import PRESETS, ConfigError, get_config, validate


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_validates(preset):
  config = validate(get_config(preset))
  assert config.preset == preset


def test_unknown_preset_lists_known_ones():
  with pytest.raises(ValueError, match="mobilellm_125m"):
    get_config("mobilellm_7b")


def test_ls_presets_share_immediately_twice():
  for name in ("mobilellm_125m_ls", "mobilellm_350m_ls"):
    m = get_config(name).model
    assert (m.layer_sharing, m.share_repeats) == ("immediate", 2)


BAD = [
    # (field path, bad value, text the message must contain)
    ("model.dim", 102, "model.dim"),  # 102 not divisible by 4 heads
    ("model.num_kv_heads", 3, "model.num_kv_heads"),  # 3 does not divide 4 heads
    ("model.ffn_type", "gelu", "model.ffn_type"),
    ("model.layer_sharing", "sideways", "model.layer_sharing"),
    ("model.share_repeats", 0, "model.share_repeats"),
    ("model.vocab_size", 1, "model.vocab_size"),
    ("data.seq_len", 4096, "data.seq_len"),  # longer than max_seq_len 128
    ("model.num_layers", 0, "model.num_layers"),
    ("model.dim", -64, "model.dim"),
    ("model.ffn_dim", 0, "model.ffn_dim"),
    ("model.compute_dtype", "float16", "model.compute_dtype"),
    ("model.remat", "sometimes", "model.remat"),
    ("model.attention", "flash", "model.attention"),
    ("model.attention_block", 0, "model.attention_block"),
    ("train.batch_size", 0, "train.batch_size"),
    ("train.grad_accum_steps", 3, "train.batch_size"),  # 4 sequences do not split into 3
    ("train.mesh_tensor", 0, "train.mesh_tensor"),
    ("optim.final_lr_ratio", 1.5, "optim.final_lr_ratio"),
    ("tracking.wandb_mode", "sometimes", "tracking.wandb_mode"),
    ("eval.tasks", "arc_easy,trivia", "unknown zero-shot task 'trivia'"),
    ("eval.batch_size", 0, "eval.batch_size"),
    ("eval.max_examples", -1, "eval.max_examples"),
]


@pytest.mark.parametrize("field,value,needle", BAD, ids=[f"{f}={v}" for f, v, _ in BAD])
def test_bad_values_are_rejected_naming_the_field(field, value, needle):
  config = get_config("smoke")
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
    validate(config)


def test_odd_head_dim_is_rejected_for_rope():
  config = get_config("smoke")
  config.model.update(dim=60, num_heads=4, num_kv_heads=2)  # head_dim 15
  with pytest.raises(ConfigError, match="even for RoPE"):
    validate(config)


def test_sharing_none_with_repeats_is_rejected():
  config = get_config("smoke")
  config.model.share_repeats = 2
  with pytest.raises(ConfigError, match="layer_sharing is 'none'"):
    validate(config)


def test_no_budget_is_rejected():
  config = get_config("smoke")
  config.train.update(num_steps=0, num_tokens=0)
  with pytest.raises(ConfigError, match="budget"):
    validate(config)
