"""Named presets: the paper's released architectures, its baselines, and small local sizes.

A preset is a dict of overrides per config section. The paper's architectures (../shared/PAPER.md):
pre-RMSNorm eps 1e-5, SwiGLU, RoPE theta 10000, no biases, head_dim 64, vocab 32000, tied
embeddings, context 2048.
"""

import ml_collections


def _paper_model(num_layers, dim, num_heads, num_kv_heads, ffn_dim, **extra):
  return dict(vocab_size=32000, num_layers=num_layers, dim=dim, num_heads=num_heads,
              num_kv_heads=num_kv_heads, ffn_dim=ffn_dim, ffn_type="swiglu",
              tie_embeddings=True, max_seq_len=2048, compute_dtype="bfloat16") | extra


# The paper trains at sequence 2048 with bf16 compute; `data.seq_len` follows for these presets.
_PAPER_DATA = dict(seq_len=2048, tokenizer_path="")
_LS = dict(layer_sharing="immediate", share_repeats=2)

PRESETS = {
    # Seconds: what the tests run.
    "smoke": dict(
        # unroll_max_depth 0: the tests run the scan over layers, as every deep model does.
        model=dict(vocab_size=512, dim=64, num_layers=2, num_heads=4, num_kv_heads=2,
                   ffn_dim=128, max_seq_len=128, unroll_max_depth=0),
        data=dict(seq_len=32),
        train=dict(batch_size=8, num_steps=4, num_tokens=0, log_every=1, eval_every=0,
                   eval_batches=2, checkpoint_every=0),
        optim=dict(warmup_steps=2),
    ),
    # The local default (~2.1M params, vocab 4096, seq 256): minutes on 2 CPU cores. Its recipe
    # is the cpu sweeps': the depth-aware init, because the paper's fixed std of 0.02 is small at
    # these widths and costs deep models 10x more loss than shallow ones, and the best peak LR
    # measured with that init at 8 and 32 layers (recipe_fairness study).
    "cpu": dict(
        model=dict(vocab_size=4096, dim=128, num_layers=8, num_heads=4, num_kv_heads=2,
                   ffn_dim=384, max_seq_len=2048, init_scheme="fan_in_depth"),
        data=dict(seq_len=256),
        optim=dict(peak_lr=6e-3, warmup_steps=25),
    ),
    "mobilellm_125m": dict(model=_paper_model(30, 576, 9, 3, 1536), data=_PAPER_DATA),
    "mobilellm_125m_ls": dict(model=_paper_model(30, 576, 9, 3, 1536, **_LS), data=_PAPER_DATA),
    "mobilellm_350m": dict(model=_paper_model(32, 960, 15, 5, 2560), data=_PAPER_DATA),
    "mobilellm_350m_ls": dict(model=_paper_model(32, 960, 15, 5, 2560, **_LS), data=_PAPER_DATA),
    "mobilellm_600m": dict(model=_paper_model(40, 1152, 18, 6, 3072), data=_PAPER_DATA),
    "mobilellm_1b": dict(model=_paper_model(54, 1280, 20, 5, 3584), data=_PAPER_DATA),
    "mobilellm_1_5b": dict(model=_paper_model(54, 1600, 25, 5, 4352), data=_PAPER_DATA),
    # The ablation ladder's starting point: a 12-layer-style model with FC-ReLU-FC FFN (4x), full
    # multi-head attention and separate input/output embeddings (~134M params).
    "baseline_125m": dict(
        model=_paper_model(12, 768, 12, 12, 3072, ffn_type="relu", tie_embeddings=False),
        data=_PAPER_DATA),
    # The 350M baseline in the same style (24 layers x 1024, as OPT-350M; ~367M params). The paper
    # does not print its exact shape; this is our choice.
    "baseline_350m": dict(
        model=_paper_model(24, 1024, 16, 16, 4096, ffn_type="relu", tie_embeddings=False),
        data=_PAPER_DATA),
}


def apply(config: ml_collections.ConfigDict, preset: str) -> None:
  """Overrides `config` in place with the named preset; unknown names list the known ones."""
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; known presets: {', '.join(sorted(PRESETS))}")
  for section, overrides in PRESETS[preset].items():
    for key, value in overrides.items():
      if key not in config[section]:
        raise KeyError(f"preset {preset!r} sets unknown field {section}.{key}")
      config[section][key] = value
  config.preset = preset
