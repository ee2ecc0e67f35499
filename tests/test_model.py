"""The decoder: sharing schedules, causality, scan == unroll, remat, sharding, dtypes."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mobilellm_jax.training import sharding, step as train_step
from mobilellm_jax.configs import ConfigError, get_config, validate_model
from mobilellm_jax.model import ModelArgs, build_model
from mobilellm_jax.model.sharing import layer_passes, layer_schedule

TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 256, size=(4, 16)))
STRATEGIES = [("none", 1), ("immediate", 2), ("repeat_all", 2), ("reverse", 2), ("reverse", 3),
              ("immediate", 3)]


def _model_config(**overrides):
  m = get_config("smoke").model
  m.update(dict(num_layers=3) | overrides)
  return m


def test_schedules_match_the_paper():
  assert layer_schedule(3, "none", 1) == [0, 1, 2]
  assert layer_schedule(3, "immediate", 2) == [0, 0, 1, 1, 2, 2]
  assert layer_schedule(3, "repeat_all", 2) == [0, 1, 2, 0, 1, 2]
  assert layer_schedule(3, "reverse", 2) == [0, 1, 2, 2, 1, 0]
  assert layer_schedule(2, "reverse", 3) == [0, 1, 1, 0, 0, 1]
  assert layer_schedule(2, "immediate", 4) == [0, 0, 0, 0, 1, 1, 1, 1]
  assert layer_passes("repeat_all", 3) == [(False, 1)] * 3
  with pytest.raises(ValueError, match="unknown layer_sharing"):
    layer_passes("sideways", 2)


def _loss(model, tokens):
  logits = model(tokens[:, :-1])
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], -1))


def _loss_and_grads(model, tokens=TOKENS):
  """Jitted (eager op-by-op dispatch is far slower than compiling once)."""
  graphdef, state = nnx.split(model)
  return jax.jit(lambda state, tokens: nnx.value_and_grad(
      lambda m: _loss(m, tokens))(nnx.merge(graphdef, state)))(state, tokens)


def _forward(model, tokens=TOKENS):
  graphdef, state = nnx.split(model)
  return jax.jit(lambda state, tokens: nnx.merge(graphdef, state)(tokens))(state, tokens)


def _max_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
@pytest.mark.parametrize("strategy,repeats", STRATEGIES)
def test_scanned_equals_unrolled_with_gradients(strategy, repeats):
  results = []
  for scan in (True, False):
    model = build_model(_model_config(layer_sharing=strategy, share_repeats=repeats,
                                      scan_layers=scan), seed=0)
    results.append(_loss_and_grads(model))
  (loss_a, grads_a), (loss_b, grads_b) = results
  assert abs(float(loss_a) - float(loss_b)) < 1e-5
  assert _max_diff(nnx.state(grads_a), nnx.state(grads_b)) < 1e-5


def test_shallow_stacks_unroll_and_deep_ones_scan():
  """model.unroll_max_depth counts effective layers (blocks x repeats); 0 always scans, and
  scan_layers=False always unrolls."""
  def scanned(**overrides):
    return ModelArgs.from_config(_model_config(**overrides)).scanned
  assert not scanned(num_layers=8, unroll_max_depth=12)
  assert scanned(num_layers=8, layer_sharing="immediate", share_repeats=2, unroll_max_depth=12)
  assert scanned(num_layers=2, unroll_max_depth=0)
  assert not scanned(num_layers=30, unroll_max_depth=12, scan_layers=False)
  assert not ModelArgs.from_config(get_config("cpu").model).scanned  # 8 layers: unrolled
  assert ModelArgs.from_config(get_config("mobilellm_125m").model).scanned  # 30: scanned
  with pytest.raises(ConfigError, match="model.unroll_max_depth"):
    validate_model(_model_config(unroll_max_depth=-1))


def test_sharing_strategies_give_different_functions():
  outputs = [_forward(build_model(_model_config(layer_sharing=s, share_repeats=r, init_std=0.2)))
             for s, r in STRATEGIES[:4]]
  for i in range(len(outputs)):
    for j in range(i + 1, len(outputs)):
      assert float(jnp.max(jnp.abs(outputs[i] - outputs[j]))) > 1e-3


@pytest.mark.parametrize("strategy,repeats", STRATEGIES[:4])
def test_causality(strategy, repeats):
  model = build_model(_model_config(layer_sharing=strategy, share_repeats=repeats), seed=0)
  changed = TOKENS.at[:, 10].set((TOKENS[:, 10] + 1) % 256)
  a, b = _forward(model, TOKENS), _forward(model, changed)
  assert float(jnp.max(jnp.abs(a[:, :10] - b[:, :10]))) == 0.0
  assert float(jnp.max(jnp.abs(a[:, 10:] - b[:, 10:]))) > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["full", "dots"])
def test_remat_same_loss_and_gradients(policy):
  plain = _loss_and_grads(build_model(_model_config(layer_sharing="immediate", share_repeats=2)))
  remat = _loss_and_grads(build_model(_model_config(layer_sharing="immediate", share_repeats=2,
                                                    remat=policy)))
  assert abs(float(plain[0]) - float(remat[0])) < 1e-6
  assert _max_diff(nnx.state(plain[1]), nnx.state(remat[1])) < 1e-6


def test_bf16_compute_close_to_f32():
  f32 = _forward(build_model(_model_config(), seed=0))
  bf16 = _forward(build_model(_model_config(compute_dtype="bfloat16"), seed=0))
  assert bf16.dtype == jnp.float32  # logits accumulate in f32
  assert 0 < float(jnp.max(jnp.abs(f32 - bf16))) < 0.05


def test_bf16_parameters_are_stored_in_bf16():
  model = build_model(_model_config(param_dtype="bfloat16", compute_dtype="bfloat16"), seed=0)
  assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("bfloat16")}
  assert jnp.isfinite(model(TOKENS)).all()


def test_every_parameter_has_logical_axes():
  model = build_model(_model_config(tie_embeddings=False), seed=0)
  names = set()
  for variable in jax.tree.leaves(nnx.state(model, nnx.Param),
                                  is_leaf=lambda x: isinstance(x, nnx.Variable)):
    axes = variable.get_metadata()["out_sharding"]
    assert len(axes) == variable.ndim
    names.update(axes)
  assert names == {"vocab", "embed", "heads", "kv_heads", "head_dim", "mlp", "layers"}


def test_too_long_sequence_is_rejected():
  model = build_model(_model_config(max_seq_len=8), seed=0)
  with pytest.raises(ValueError, match="max_seq_len"):
    model(TOKENS)


@pytest.mark.parametrize("mesh_sizes,shardy", [((8, 1, 1), True), ((2, 2, 2), True),
                                              ((1, 2, 4), True), ((1, 2, 4), False)])
@pytest.mark.slow
def test_sharded_over_8_devices_equals_single_device(mesh_sizes, shardy, request):
  """Also under the older GSPMD partitioner, which the kernels' batch split does not use."""
  assert jax.device_count() == 8
  previous = jax.config.jax_use_shardy_partitioner
  jax.config.update("jax_use_shardy_partitioner", shardy)
  request.addfinalizer(lambda: jax.config.update("jax_use_shardy_partitioner", previous))
  config = _sharded_test_config()
  config.train.update(mesh_data=mesh_sizes[0], mesh_fsdp=mesh_sizes[1], mesh_tensor=mesh_sizes[2])
  mesh = sharding.make_mesh(config.train)
  graphdef, state, _ = sharding.init_sharded(lambda: build_model(config.model, seed=0), mesh)
  params_split = any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(state))
  assert params_split == (mesh_sizes[1] * mesh_sizes[2] > 1)  # data-only meshes replicate params
  tokens = jax.device_put(jnp.tile(TOKENS, (2, 1)), sharding.batch_sharding(mesh))

  loss, grads = _loss_and_grads(nnx.merge(graphdef, state), tokens)
  ref_loss, ref_grads = _single_device_reference()
  assert abs(float(loss) - ref_loss) < 1e-5
  assert _max_diff(nnx.state(grads), ref_grads) < 1e-5


def _sharded_test_config():
  config = get_config("smoke")
  config.model.update(num_layers=3, layer_sharing="reverse", share_repeats=2)
  return config


@functools.cache
def _single_device_reference():
  """(loss, gradient state) of the sharded test's model on one device: computed once for every
  mesh it is compared with."""
  model = build_model(_sharded_test_config().model, seed=0)
  loss, grads = _loss_and_grads(model, jnp.tile(TOKENS, (2, 1)))
  return float(loss), nnx.state(grads)


@pytest.mark.hlo_text
@pytest.mark.slow
@pytest.mark.parametrize("unroll_max_depth", [0, 12])  # scanned, unrolled
def test_kernels_take_each_devices_rows_on_a_data_mesh(unroll_max_depth):
  """The C++ kernels (native/partitioning.py) run on each device's share of the batch: on an
  8-way data mesh, the training loss and gradient compile with no all-gather at all (params are
  replicated there), and every kernel call sees batch / 8 rows."""
  config = get_config("smoke")
  config.model.update(num_layers=3, unroll_max_depth=unroll_max_depth)
  config.train.update(mesh_data=8, mesh_fsdp=1, mesh_tensor=1)
  mesh = sharding.make_mesh(config.train)
  graphdef, params, _ = sharding.init_sharded(lambda: build_model(config.model, seed=0), mesh)
  rows = jax.device_put(jnp.zeros((16, 16), jnp.int32), sharding.batch_sharding(mesh))
  batch = dict(inputs=rows, targets=rows)
  text = jax.jit(lambda p, b: train_step.loss_and_grads(p, graphdef, b, 1)).lower(
      params, batch).compile().as_text()
  assert "all-gather" not in text
  calls = [line for line in text.splitlines() if 'custom_call_target="mobilellm_' in line]
  assert {re.search(r'custom_call_target="(\w+)"', c).group(1) for c in calls} >= {
      "mobilellm_fused_attention_fwd", "mobilellm_fused_attention_bwd", "mobilellm_swiglu_bwd",
      "mobilellm_softmax_cross_entropy"}
  shapes = {c: [[int(d) for d in dims.split(",")] for dims in re.findall(r"[fs]32\[([\d,]*)\]", c)]
            for c in calls}
  assert {s[0] for c in calls if "uninitialised" not in c for s in shapes[c]} == {2}
  # layer_scan's stacks of saved values: [layers, batch / 8, ...] on each device (weights whole)
  stacks = [shapes[c][0] for c in calls if "uninitialised" in c]
  assert bool(stacks) == (unroll_max_depth == 0)
  assert all(s[1] in (2, config.model.dim) for s in stacks)


@pytest.mark.slow
def test_sharded_init_makes_the_parameters_of_a_fully_optimised_compile():
  """sharding.init_compiler_options() compiles the init faster; the values must not change."""
  config = get_config("smoke")
  config.model.update(num_layers=3, ffn_type="relu", tie_embeddings=False)
  mesh = sharding.make_mesh(config.train, jax.devices()[:1])
  make = lambda: build_model(config.model, seed=3)
  _, params, _ = sharding.init_sharded(make, mesh)
  reference = jax.jit(lambda: nnx.to_pure_dict(nnx.state(make())),
                      compiler_options={"xla_backend_optimization_level": 3})()
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(reference), strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_mesh_shape_errors_name_the_fields():
  config = get_config("smoke")
  config.train.update(mesh_data=3, mesh_fsdp=1, mesh_tensor=1)
  with pytest.raises(ValueError, match="mesh"):
    sharding.make_mesh(config.train)
