"""KV-cache decoding (float32): cached logits equal a full forward pass under every sharing
schedule, greedy text equals transformers' generate on the exported directory, export -> import
is exact, sampling keeps to its cut, a mesh gives the single-device tokens."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from mobilellm_jax.model import generation
from mobilellm_jax.configs import get_config
from mobilellm_jax.hf import read_directory, write_directory
from mobilellm_jax.model import build_model

VOCAB = 97
SCHEDULES = [("none", 1), ("immediate", 2), ("immediate", 3), ("repeat_all", 2),
             ("repeat_all", 3), ("reverse", 2), ("reverse", 3)]
CASES = [(s, k, tie) for s, k in SCHEDULES for tie in (True, False)]
PROMPTS = [[5, 17, 3, 88, 41], [9, 2, 60, 31, 7, 7, 19, 54, 23], [70]]  # right-padded to 9


def _model_config(**overrides):
  m = get_config("smoke").model
  m.update(dict(vocab_size=VOCAB, dim=64, num_layers=2, num_heads=4, num_kv_heads=2, ffn_dim=96,
                init_std=0.1) | overrides)
  return m


@functools.lru_cache(maxsize=None)
def _model(strategy, repeats, tie):
  """(model, params, generator); the blocks differ from each other, so a wrong order shows."""
  model = build_model(_model_config(layer_sharing=strategy, share_repeats=repeats,
                                    tie_embeddings=tie), seed=11)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  return model, params, generation.Generator(params, model.args)


@pytest.mark.slow
@pytest.mark.parametrize("strategy,repeats,tie", CASES)
def test_cached_decoding_matches_full_forward(strategy, repeats, tie):
  model, params, generator = _model(strategy, repeats, tie)
  continuation = np.random.default_rng(1).integers(0, VOCAB, (len(PROMPTS), 6))
  tokens, lengths = generation.pad_prompts(PROMPTS)
  cached = np.asarray(generation.teacher_forced_logits(
      generator.weights, tokens, lengths, continuation, spec=generator.spec))
  # One full pass over each row's prompt + continuation (trailing padding cannot reach them).
  full = np.zeros((len(PROMPTS), max(lengths) + 6), np.int32)
  for row, prompt in enumerate(PROMPTS):
    full[row, :len(prompt) + 6] = prompt + continuation[row].tolist()
  logits = np.asarray(model(jnp.asarray(full)))
  for row, prompt in enumerate(PROMPTS):
    expected = logits[row, len(prompt) - 1:len(prompt) + 6]
    assert np.abs(cached[row] - expected).max() < 1e-5
  assert np.abs(cached).max() > 0.5  # not trivially small
  caches = generation.init_cache(generator.spec, 2, 8)
  assert len(caches) == 2 * repeats  # one cache per execution of a block
  # B x K x S x E entries per tensor: K = 2 kv heads, not H = 4 query heads.
  assert caches[0]["k"].size == caches[0]["v"].size == 2 * 2 * 8 * 16


@functools.lru_cache(maxsize=None)
def _exported(strategy, repeats, tie, root):
  model, params, _ = _model(strategy, repeats, tie)
  out = root / f"{strategy}{repeats}{'tied' if tie else 'untied'}"
  write_directory(out, model.args, params, eos_id=None)
  return out


@pytest.fixture(scope="module")
def export_root(tmp_path_factory):
  return tmp_path_factory.mktemp("hf")


@pytest.mark.parametrize("strategy,repeats,tie", CASES)
def test_greedy_equals_transformers_generate(strategy, repeats, tie, export_root):
  model, _, generator = _model(strategy, repeats, tie)
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      str(_exported(strategy, repeats, tie, export_root)), dtype=torch.float32).eval()
  assert hf.config.num_hidden_layers == 2 * repeats
  ours = generator(PROMPTS, max_new_tokens=12)  # one batch, right-padded
  for prompt, new in zip(PROMPTS, ours):
    theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                         pad_token_id=0)[0, len(prompt):].tolist()
    assert new == theirs
  assert len({tuple(o) for o in ours}) > 1


@pytest.mark.parametrize("strategy,repeats,tie", CASES)
def test_export_import_round_trips_bit_for_bit(strategy, repeats, tie, export_root):
  model, params, _ = _model(strategy, repeats, tie)
  base = get_config("cpu").model
  model_config, imported = read_directory(_exported(strategy, repeats, tie, export_root), base)
  for field in ("vocab_size", "dim", "num_layers", "num_heads", "num_kv_heads", "ffn_dim",
                "tie_embeddings", "layer_sharing", "share_repeats", "rope_theta", "norm_eps"):
    assert model_config[field] == model.args.__getattribute__(field), field
  assert jax.tree.structure(imported) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(imported), jax.tree.leaves(params)):
    assert a.dtype == b.dtype and np.array_equal(a, np.asarray(b))


def test_import_of_edited_copies_falls_back_to_unshared(tmp_path):
  """A shared export whose repeated layers were changed (e.g. fine-tuned in transformers)
  imports as the plain Llama it now is, not silently as the first copy."""
  from safetensors.numpy import load_file, save_file  # pylint: disable=import-outside-toplevel
  model, params, _ = _model("immediate", 2, True)
  out = write_directory(tmp_path, model.args, params)
  state = load_file(str(out / "model.safetensors"))
  state["model.layers.1.mlp.up_proj.weight"] += 1e-3
  save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
  model_config, imported = read_directory(out, get_config("cpu").model)
  assert model_config.layer_sharing == "none" and model_config.num_layers == 4
  assert imported["blocks"]["ffn"]["w_up_DxF"].shape[0] == 4


@pytest.mark.slow
def test_eos_stops_a_row_and_pads_it():
  model, _, generator = _model("immediate", 2, True)
  free = generator(PROMPTS, max_new_tokens=10)
  eos = free[0][3]  # the token row 0 emits fourth
  stopped = generator(PROMPTS, max_new_tokens=10, eos_id=eos)
  assert stopped[0] == free[0][:free[0].index(eos) + 1]  # up to and including its first EOS
  for row in (1, 2):
    cut = free[row].index(eos) + 1 if eos in free[row] else 10
    assert stopped[row] == free[row][:cut]
  tokens, count = generation.generate_tokens(
      generator.weights, *generation.pad_prompts(PROMPTS), jax.random.key(0), spec=generator.spec,
      max_new_tokens=10, eos_id=eos)
  tokens, count = np.asarray(tokens), np.asarray(count)
  assert count[0] == len(stopped[0]) and (tokens[0, count[0]:] == eos).all()


def test_sampling_cuts():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 2000))
  key = jax.random.key(0)
  draw = lambda **kw: set(np.asarray(generation.sample(logits, key, generation.Sampling(**kw))).tolist())
  assert draw(temperature=1.0) == {0, 1, 2, 3}
  assert draw(temperature=1.0, top_p=0.7) == {0, 1}  # 0.5 + 0.3 reaches 0.7
  assert draw(temperature=1.0, top_p=0.85) == {0, 1, 2}
  assert draw(temperature=1.0, top_k=3) == {0, 1, 2}
  assert draw(temperature=5.0, top_k=1) == {0}
  assert draw(temperature=0.0) == {0}


@pytest.mark.slow
def test_sampled_tokens_come_from_the_top_k():
  model, _, generator = _model("reverse", 2, False)
  sampled = generator(PROMPTS, max_new_tokens=12, seed=3,
                      sampling=generation.Sampling(temperature=2.0, top_k=3))
  assert sampled == generator(PROMPTS, max_new_tokens=12, seed=3,
                              sampling=generation.Sampling(temperature=2.0, top_k=3))
  assert sampled != generator(PROMPTS, max_new_tokens=12)  # not greedy
  tokens, lengths = generation.pad_prompts(PROMPTS)
  logits = np.asarray(generation.teacher_forced_logits(
      generator.weights, tokens, lengths, np.asarray(sampled), spec=generator.spec))
  for row, new in enumerate(sampled):
    for step, token in enumerate(new):
      assert token in np.argsort(logits[row, step])[-3:]


@pytest.mark.hlo_text
@pytest.mark.slow
def test_mesh_with_sharded_batch_gives_single_device_tokens():
  model, params, single = _model("immediate", 2, True)
  mesh = jax.make_mesh((8, 1, 1), ("data", "fsdp", "tensor"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 3)
  sharded = generation.Generator(params, model.args, mesh=mesh)
  prompts = [PROMPTS[i % 3][:1 + i] for i in range(8)]
  assert sharded(prompts, max_new_tokens=6) == single(prompts, max_new_tokens=6)
  tokens, lengths = generation.pad_prompts(prompts)
  spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  compiled = generation.generate_tokens.lower(
      sharded.weights, jax.device_put(tokens, jax.sharding.NamedSharding(
          mesh, jax.sharding.PartitionSpec("data", None))), jax.device_put(lengths, spec),
      jax.random.key(0), spec=sharded.spec, max_new_tokens=6, batch_sharding=spec).compile()
  assert "all-gather" not in compiled.as_text()  # each device decodes its own rows
