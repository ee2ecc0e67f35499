"""The one config schema. `get_config('<preset>')` is what `--config=.../base.py:<preset>` loads.

Every field is documented where it is declared. `validate(config)` (configs/validation.py) checks
the whole thing before anything compiles.
"""

import ml_collections

from mobilellm_jax.configs import presets


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
  """The defaults below, overridden by a named preset (see configs/presets.py)."""
  config = ml_collections.ConfigDict()
  config.preset = preset  # Which preset these values started from (recorded, not used).

  # --- model: the decoder (mobilellm_jax/model/decoder.py) -----------------------------------
  m = config.model = ml_collections.ConfigDict()
  m.vocab_size = 4096  # Tokenizer vocabulary; must match the tokenizer in use.
  m.dim = 128  # Residual stream width (d_model).
  m.num_layers = 6  # Unique transformer blocks (parameters); effective depth = this x repeats.
  m.num_heads = 4  # Query heads; head_dim = dim // num_heads.
  m.num_kv_heads = 2  # Key/value heads (grouped-query attention); must divide num_heads.
  m.ffn_type = "swiglu"  # 'swiglu' (gated SiLU, 3 matrices) or 'relu' (FC-ReLU-FC, 2 matrices).
  m.ffn_dim = 384  # FFN hidden width.
  m.tie_embeddings = True  # Input embedding reused as the output head (the paper's sharing).
  m.layer_sharing = "none"  # 'none' | 'immediate' (1,1,2,2..) | 'repeat_all' (1..N,1..N) | 'reverse' (1..N,N..1).
  m.share_repeats = 1  # Times each unique block runs (k >= 1); 'none' requires 1.
  m.max_seq_len = 2048  # Length of the RoPE table; the longest sequence the model accepts.
  m.rope_theta = 10000.0  # RoPE base frequency.
  m.norm_eps = 1e-5  # RMSNorm epsilon.
  m.init_std = 0.02  # Stddev of the normal initializer for every matrix under init_scheme 'fixed' (norm scales start at 1).
  m.init_scheme = "fixed"  # 'fixed' (init_std, the paper's code) | 'fan_in' (1/sqrt(fan_in)) | 'fan_in_depth' (also residual outputs / sqrt(2 x effective depth)); model.init_std().
  m.param_dtype = "float32"  # Storage dtype of the parameters: 'float32' | 'bfloat16'.
  m.compute_dtype = "float32"  # Matmul/activation dtype: 'float32' | 'bfloat16' (norms, softmax and loss stay f32).
  m.scan_layers = True  # Scan over unique blocks (compile time flat in depth); False unrolls (same numbers).
  m.unroll_max_depth = 12  # With scan_layers, stacks of at most this many effective layers are unrolled anyway (faster, docs/performance.md); 0 = always scan.
  m.attention = "auto"  # 'auto' (CPU: fused_cpu, GPU: cudnn, TPU: pallas_tpu, where they run) | 'fused_cpu' | 'blocked' | 'xla' | 'cudnn' | 'pallas_tpu' (ops/attention.py).
  m.attention_block = 64  # 'blocked': query positions per block (each block skips the keys after it).
  m.remat = "none"  # Rematerialise each block in the backward pass: 'none' | 'full' | 'dots' (save matmuls).

  # --- data: corpus, tokenizer, input pipeline (mobilellm_jax/data/) ------------------------
  d = config.data = ml_collections.ConfigDict()
  d.dataset = "mobilellm_corpus"  # The embedded corpus, a TFDS catalog name ('lm1b', 'c4/en'), or 'jsonl:<path>'.
  d.data_dir = ""  # TFDS data_dir; '' = $MOBILELLM_DATA_DIR or ~/.cache/mobilellm_jax.
  d.text_feature = "text"  # Name of the text feature in a TFDS dataset.
  d.train_split = "train"  # Split trained on.
  d.eval_split = "validation"  # Split for periodic validation loss and perplexity.
  d.tokenizer_path = ""  # SentencePiece .model; '' = the one trained next to the embedded corpus.
  d.seq_len = 256  # Tokens per training sequence (the model sees seq_len, predicts seq_len targets).
  d.num_workers = 0  # grain worker processes (0 = read in the main process).

  # --- optim: AdamW + warmup/cosine (the paper's recipe) ------------------------------------
  o = config.optim = ml_collections.ConfigDict()
  o.peak_lr = 2e-3  # Peak learning rate after warmup.
  o.warmup_steps = 100  # Linear warmup from 0 to peak_lr.
  o.final_lr_ratio = 0.1  # Cosine decays to peak_lr * final_lr_ratio at the last step.
  o.b1 = 0.9  # AdamW beta1.
  o.b2 = 0.95  # AdamW beta2.
  o.eps = 1e-8  # AdamW epsilon.
  o.weight_decay = 0.1  # Decoupled weight decay, applied to matrices only (not norm scales).
  o.grad_clip = 1.0  # Global-norm clip; 0 disables.

  # --- train: one run's budget, batch, mesh, checkpoints ------------------------------------
  t = config.train = ml_collections.ConfigDict()
  t.seed = 0  # Seeds parameter init and the data order.
  t.batch_size = 16  # Global sequences per optimizer step.
  t.grad_accum_steps = 1  # Microbatches per step; batch_size must be divisible by it.
  t.num_steps = 0  # Steps to train; 0 = derive from num_tokens.
  t.num_tokens = 1_000_000  # Token budget, used when num_steps == 0.
  t.log_every = 10  # Steps between metric lines (metrics.jsonl, W&B, progress bar).
  t.eval_every = 200  # Steps between validation passes; 0 = only at the end.
  t.eval_batches = 8  # Validation batches per pass.
  t.checkpoint_every = 200  # Steps between orbax checkpoints; 0 = only at the end.
  t.keep_checkpoints = 2  # How many recent checkpoints orbax keeps.
  t.init_from_hf = ""  # A Hugging Face Llama directory (python -m mobilellm_jax.hf export) whose weights start the run; its architecture replaces the model section, its tokenizer.model an empty data.tokenizer_path. A checkpoint in the workdir still wins.
  t.mesh_data = -1  # Mesh axis 'data' size; -1 = fill with the remaining devices.
  t.mesh_fsdp = 1  # Mesh axis 'fsdp' size (parameters and optimizer state sharded).
  t.mesh_tensor = 1  # Mesh axis 'tensor' size (heads / mlp sharded).

  # --- eval: zero-shot tasks at the end of a run --------------------------------------------
  e = config.eval = ml_collections.ConfigDict()
  e.tasks = ""  # Comma-separated zero-shot tasks ('' = none), e.g. 'arc_easy,piqa'.
  e.max_examples = 0  # Per task; 0 = all.
  e.batch_size = 32  # Sequences per scoring batch.

  # --- tracking: W&B and the local files ----------------------------------------------------
  k = config.tracking = ml_collections.ConfigDict()
  k.wandb_mode = "offline"  # 'offline' (no account needed) | 'online' | 'disabled'.
  k.project = "mobilellm_jax"  # W&B project.
  k.run_name = ""  # '' = derived from the config (e.g. L30-d576-h9kv3-share_immediate2-s0).
  k.group = ""  # W&B group; the launcher sets it to the sweep name.
  k.param_budget = 0  # Parameter budget the sweep matched this run to (0 = none); tables show the deviation.
  k.paper_params = 0  # The paper's parameter count for this run's model, where it states one (0 = none); the dry run shows ours beside it.
  k.label = ""  # Short label of the run's point in its sweep (e.g. '+ SwiGLU'); tables show it.
  k.tags = ""  # Comma-separated W&B tags.

  presets.apply(config, preset)
  return config
