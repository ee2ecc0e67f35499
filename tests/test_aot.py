"""Compiling the real steps for a TPU slice from this CPU host (the TPU compiler from PyPI): the
platform decision follows the target, the sharding's collectives, memory and the fit search."""

import importlib.util

import jax
import jax.numpy as jnp
import pytest

from flax import nnx

from mobilellm_jax.accelerators import aot, chips, fit_report, fit_search, peaks
from mobilellm_jax.ops import attention
from mobilellm_jax.training import sharding, step as train_step, target
from mobilellm_jax.configs import get_config
from mobilellm_jax.model import build_model
from mobilellm_jax.training.optim import make_optimizer


@pytest.fixture(scope="module")
def v5e_2x2():
  return chips.parse("tpu:v5e:2x2")


def smoke(**overrides):
  config = get_config("smoke")
  return fit_search.with_overrides(config, overrides)


def test_the_platform_is_the_compile_targets_not_the_process(v5e_2x2):
  mesh = jax.sharding.Mesh([[[d]] for d in v5e_2x2.devices], ("data", "fsdp", "tensor"))
  assert target.platform() == "cpu"
  with target.compiling_for(mesh):
    assert target.platform() == "tpu"
    # A TPU kernel, not the C++ one this CPU process would pick.
    assert attention.resolve("auto", jnp.float32, 64) in attention.AUTO_PREFERENCE["tpu"]
  assert attention.resolve("auto", jnp.float32, 64) == "fused_cpu"


@pytest.mark.hlo_text
@pytest.mark.slow
def test_one_process_compiles_the_cpu_kernels_for_cpu_targets_only(v5e_2x2):
  config = smoke(**{"train.mesh_data": 4})
  kernel = 'custom_call_target="mobilellm_'
  for spec, expected in (("cpu:4", True), ("tpu:v5e:2x2", False)):
    reports = aot.compile_steps(config, chips.parse(spec), steps=("eval",), keep_hlo=True)
    assert (kernel in reports["eval"].hlo) == expected, spec


def test_parse_names_every_bad_target():
  for spec, message in (("tpu:v9:2x2", "unknown TPU generation 'v9'"),
                        ("tpu:v5e:2by2", "is not AxB or AxBxC"),
                        ("cpu:64", "this process has 8 CPU device"),
                        ("gpu:v100x8", r"expected gpu:<h100\|h200\|a100>x<GPUs>"),
                        ("gpu:h100x12", "whole hosts of 8"),
                        ("tpu", "expected one of")):
    with pytest.raises(chips.TargetError, match=message):
      chips.parse(spec)
  assert chips.parse("tpu:v4:2x2x2").num_chips == 8  # one device per chip (megacore)
  assert chips.parse("cpu:8").platform == "cpu"


@pytest.mark.parametrize("generation,topology",
                         [("v4", "2x2x1"), ("v5e", "2x2"), ("v5p", "2x2x1"), ("v6e", "2x2")])
def test_every_tpu_target_has_its_datasheet_under_the_device_kind_jax_reports(
    generation, topology, monkeypatch):
  """--target local and the trainer's MFU (accelerators/peaks.py) find the chip by the device
  kind JAX reports ('TPU v5 lite' for v5e, 'TPU v5' for v5p); the compile-only devices report the
  same kinds."""
  spec = f"tpu:{generation}:{topology}"
  slice_ = chips.parse(spec)
  chip = chips.TPU_CHIPS[generation]
  assert slice_.chip is chip and chip.peak_flops > 1e14 and chip.hbm_bytes >= 16 * 1024 ** 3
  kind = slice_.devices[0].device_kind
  assert chips.chip_of_kind(kind) is chip, kind
  monkeypatch.setattr(jax, "local_devices", lambda *args, **kwargs: list(slice_.devices))
  monkeypatch.setattr(jax, "local_device_count", lambda *args, **kwargs: len(slice_.devices))
  peak, source = peaks.machine_peak_flops()
  assert peak == 4 * chip.peak_flops and kind in source


def test_gpu_device_kinds_match_whole_model_names():
  gpu_chips = chips.GPU_CHIPS
  for kind, name in (("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H200", "H200"),
                     ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA A10", "A10"),
                     ("NVIDIA L4", "L4")):
    assert chips.chip_of_kind(kind) is gpu_chips[name], kind
  assert chips.chip_of_kind("NVIDIA L40S") is None  # not an L4
  assert chips.chip_of_kind("TPU v9") is None


_CUDA_COMPILER = importlib.util.find_spec("jax_cuda12_plugin") is not None


@pytest.mark.hlo_text
@(pytest.mark.slow if _CUDA_COMPILER else lambda test: test)  # slow only when it compiles
def test_a_gpu_target_compiles_with_the_cuda_compiler_or_says_what_to_install():
  """The CUDA compiler is an optional install (jax[cuda12], ~5.5 GB); with it, --target gpu:...
  compiles for GPUs this host does not have, and memory_analysis() against the GPU's memory is
  the fit verdict (the GPU compiler refuses nothing)."""
  if not _CUDA_COMPILER:
    with pytest.raises(chips.TargetError,
                       match=rf"pip install 'jax\[cuda12\]=={jax.__version__}'"):
      chips.parse("gpu:h100x8")
    return
  gpus = chips.parse("gpu:h100x16")
  assert gpus.platform == "gpu" and gpus.num_chips == 16
  assert gpus.chip is chips.GPU_CHIPS["H100"]
  assert chips.chip_of_kind(gpus.devices[0].device_kind) is gpus.chip
  reports = aot.compile_steps(smoke(**{"train.mesh_data": 2}), chips.parse("gpu:h100x2"),
                              keep_hlo=True)
  train = reports["train"]
  assert train.fits and train.memory.total < 1e9 and train.limit_bytes == 80e9
  assert any(op.startswith("all-reduce") for op, _, _ in aot.collectives(train.hlo))


def _gathers_whole_batch(hlo: str, batch: int, length: int) -> list:
  """Collectives whose result holds rows of the whole batch: leading dims multiplying to
  `batch`, then `length` (token ids [8, 32] or [4, 2, 32], logits [8, 32, V])."""
  found = []
  for op, dtype, dims in aot.collectives(hlo):
    if op.startswith(("all-gather", "all-to-all")):
      for split in range(1, len(dims)):
        prefix = 1
        for d in dims[:split]:
          prefix *= d
        if prefix == batch and dims[split] == length:
          found.append((op, dtype, dims))
  return found


@pytest.mark.hlo_text
@pytest.mark.slow
@pytest.mark.parametrize("mesh", [(4, 1, 1), (1, 2, 2)], ids=["data4", "fsdp2xtensor2"])
def test_smoke_steps_compile_for_a_tpu_slice_with_the_collectives_their_mesh_implies(
    v5e_2x2, mesh):
  config = smoke(**{"train.mesh_data": mesh[0], "train.mesh_fsdp": mesh[1],
                    "train.mesh_tensor": mesh[2]})
  reports = aot.compile_steps(config, v5e_2x2, keep_hlo=True)
  train = reports["train"]
  assert train.fits and reports["eval"].fits and train.memory.alias > 0  # the state is donated
  assert reports["layout"].attention in attention.AUTO_PREFERENCE["tpu"]
  hlo = train.hlo
  assert 'custom_call_target="mobilellm_' not in hlo  # no CPU kernel reached the TPU program
  ops = [op for op, _, _ in aot.collectives(hlo)]
  assert not _gathers_whole_batch(hlo, config.train.batch_size, config.data.seq_len)
  assert any(op.startswith("all-reduce") for op in ops)  # gradients summed over the batch
  if mesh[1] == 1:
    assert not any(op.startswith("all-gather") for op in ops)  # nothing is sharded to gather
  else:
    # fsdp: parameters gathered for use inside the loop over layers, the embedding's gradient
    # reduce-scattered onto its shards.
    assert any(op.startswith("all-gather") for op in ops)
    assert "reduce-scatter" in ops


def test_collectives_count_the_tpu_compilers_fused_reduce_scatter_by_its_shards():
  hlo = """%all-reduce-scatter.2 (input.1: f32[512,2048]) -> f32[128,2048] {
  %all-reduce.1 = f32[512,2048]{1,0} all-reduce(%input.1), to_apply=%add
  ROOT %dynamic-slice.1 = f32[128,2048]{1,0} dynamic-slice(%all-reduce.1, %p, %z)
}

ENTRY %main (p.0: f32[8,64]) -> f32[128,2048] {
  %all-gather.3 = bf16[1,512,2048]{2,1,0:T(8,128)(2,1)} all-gather(%p.0), dimensions={1}
  %fusion.5 = (f32[128,1024]{1,0:T(8,128)S(1)}, f32[8,64,128]{2,1,0}) fusion(%a, %b), kind=kCustom, calls=%all-reduce-scatter.6
  %all-reduce.7 = (f32[512]{0}, f32[]{:T(128)}) all-reduce(%c, %d), to_apply=%add
  ROOT %fusion.4 = f32[128,2048]{1,0} fusion(%e), kind=kCustom, calls=%all-reduce-scatter.2
}
"""
  assert aot.collectives(hlo) == [
      ("all-gather", "bf16", (1, 512, 2048)), ("reduce-scatter", "f32", (128, 1024)),
      ("reduce-scatter", "f32", (8, 64, 128)), ("all-reduce", "f32", (512,)),
      ("all-reduce", "f32", ()), ("reduce-scatter", "f32", (128, 2048))]


@pytest.mark.hlo_text
@pytest.mark.slow
def test_fsdp_reduce_scatters_every_weight_gradient_onto_its_shards(v5e_2x2):
  """Under fsdp each weight's gradient, summed over every device's batch rows, is reduced onto
  the weight's shards: no weight gradient is all-reduced whole. The q/k/v projections share one
  concatenated matmul whose gradient feeds three parameters (model/decoder.py constrains its layout,
  sharding.constrain_gradient). Wide enough that the TPU compiler reduce-scatters rather than
  all-reduces and slices (it does the latter for the smoke preset's few-KB gradients and, even
  when asked for a reduce-scatter, over 16-device groups); the 1-D norm scales it all-reduces
  (D floats per layer)."""
  D, F, H, K, E, V = 512, 2048, 8, 4, 64, 512
  config = smoke(**{"train.mesh_data": 1, "train.mesh_fsdp": 4, "model.dim": D,
                    "model.ffn_dim": F, "model.num_heads": H, "model.num_kv_heads": K})
  train = aot.compile_steps(config, v5e_2x2, steps=("train",), keep_hlo=True)["train"]
  found = aot.collectives(train.hlo)
  assert [c for c in found if c[0].startswith("all-reduce") and len(c[2]) > 1] == []
  scattered = {dims for op, _, dims in found if op == "reduce-scatter"}
  shards = {(D // 4, (H + 2 * K) * E), (D // 4, F), (F, D // 4), (H, E, D // 4), (V, D // 4)}
  assert shards <= scattered, shards - scattered  # q/k/v, gate and up, down, out, embedding


def test_fsdp_shards_the_optimizer_moments_like_their_parameters():
  """Left to XLA, the moments (made from zeros) came out replicated: 2/3 of the state whole on
  every chip."""
  config = smoke(**{"train.mesh_data": 1, "train.mesh_fsdp": 4})
  mesh = sharding.make_mesh(config.train, jax.devices()[:4])
  _, abstract = nnx.split(nnx.eval_shape(lambda: build_model(config.model)))
  param_shardings = sharding.param_shardings(abstract, mesh)
  state = train_step.state_shardings(nnx.to_pure_dict(abstract), make_optimizer(config.optim, 4),
                                     param_shardings, mesh)
  adam = state["opt_state"][1][0]
  assert jax.tree.leaves(adam.mu) == jax.tree.leaves(param_shardings) == jax.tree.leaves(adam.nu)
  assert all("fsdp" in str(s.spec) for s in jax.tree.leaves(param_shardings))
  assert state["step"].spec == jax.sharding.PartitionSpec()


@pytest.mark.slow
def test_an_over_large_config_does_not_fit_and_the_search_finds_one_that_does(v5e_2x2):
  """1.9B parameters with their Adam moments, replicated by a data-parallel mesh, need ~50 GiB
  per chip against v5e's 16; sharded over the 4 chips (fsdp) they fit."""
  config = smoke(**{"model.dim": 4096, "model.num_heads": 32, "model.num_kv_heads": 8,
                    "model.ffn_dim": 32768, "model.num_layers": 4, "train.batch_size": 4,
                    "data.seq_len": 8})
  tried = []
  search = fit_search.search(config, v5e_2x2, log=tried.append)
  given = search.given.report
  assert not given.fits and given.memory is None and "RESOURCE_EXHAUSTED" in given.refusal
  assert given.needed_bytes > 3 * v5e_2x2.chip.hbm_bytes
  fitting = search.fitting
  assert fitting is not None and fitting.report.fits and fitting is search.tried[-1]
  assert fitting.layout.mesh == (1, 4, 1) and fitting.report.needed_bytes < v5e_2x2.chip.hbm_bytes
  assert tried == [search.given, *search.tried]
  text = fit_report.describe(config, v5e_2x2, search, None)
  assert "refused by the compiler" in text
  assert "fits with: --config.train.mesh_data=1 --config.train.mesh_fsdp=4" in text


@pytest.mark.slow
def test_the_launchers_dry_run_shows_each_runs_fit_on_a_target(capsys):
  from experiments import launch as launch_cli  # pylint: disable=import-outside-toplevel
  argv = ["--sweep", "depth_vs_width", "--scale", "smoke", "--only", "L1-*"]
  assert launch_cli.main(argv + ["--dry_run", "--target", "tpu:v5e:2x2"]) == 0
  out = capsys.readouterr().out
  assert "fit per chip on tpu:v5e:2x2: 4 x TPU v5e" in out
  assert [l for l in out.splitlines() if l.startswith("L1-") and " fits (" in l]
  assert launch_cli.main(argv + ["--target", "tpu:v5e:2x2"]) == 2  # compiles only with --dry_run
  assert launch_cli.main(argv + ["--dry_run", "--target", "tpu:v5e"]) == 2
  assert "error: --target 'tpu:v5e': expected one of" in capsys.readouterr().err
