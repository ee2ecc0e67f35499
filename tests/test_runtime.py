"""Process set-up belongs to the CLIs: importing the package changes nothing in the process; the
platform default reads the host's device files; a bad --config ends in one error line."""

import json
import os
import subprocess
import sys

import pytest

from mobilellm_jax.training import runtime
from mobilellm_jax.configs import ConfigError, get_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_IMPORTS = """
import sys
events = []
def hook(event, args):
  if event == "ctypes.dlopen" or event == "subprocess.Popen":
    events.append((event, str(args)[:200]))
sys.addaudithook(hook)
import mobilellm_jax, mobilellm_jax.model, mobilellm_jax.model.counting, mobilellm_jax.training.loop
import mobilellm_jax.runner.launch, mobilellm_jax.model.generation
print(repr(events))
"""


@pytest.mark.slow
def test_importing_the_package_neither_tunes_malloc_nor_builds(tmp_path):
  env = dict(os.environ, MOBILELLM_NATIVE_CACHE=str(tmp_path / "native"), JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _IMPORTS], env=env, capture_output=True, text=True,
                       timeout=300, check=True)
  events = eval(out.stdout.strip().splitlines()[-1])  # pylint: disable=eval-used
  # mallopt is reached through ctypes.CDLL(libc); a kernel build runs g++ in a subprocess.
  assert not [e for e in events if "libc" in e[1] or "g++" in e[1]], events
  assert not (tmp_path / "native").exists() or not os.listdir(tmp_path / "native")


def test_platform_default_reads_device_files(tmp_path):
  root = tmp_path
  assert runtime.default_platforms(str(root), environ={}, plugins=set()) == "cpu"
  # A CUDA plugin without a visible GPU (e.g. installed for compile-only targets) is not used.
  assert runtime.default_platforms(str(root), environ={}, plugins={"xla_cuda12"}) == "cpu"
  (root / "dev").mkdir()
  (root / "dev" / "nvidia0").write_text("")
  assert runtime.default_platforms(str(root), environ={}, plugins={"xla_cuda12"}) == "cuda,cpu"
  # A TPU host leaves the choice to JAX (libtpu), from device nodes or a TPU VM's environment.
  assert runtime.default_platforms(str(root), environ={"TPU_ACCELERATOR_TYPE": "v5litepod-8"},
                                   plugins=set()) is None
  (root / "dev" / "accel0").write_text("")
  assert runtime.has_tpu(str(root), environ={})


@pytest.mark.parametrize("flag, message", [
    ("--config=mobilellm_jax/configs/base.py:no_such_preset", "no_such_preset"),
    ("--config.model.no_such_field=3", "no_such_field"),
    ("--config=mobilellm_jax/configs/missing.py", "--config file"),
])
@pytest.mark.slow
def test_a_bad_config_flag_ends_in_one_error_line(flag, message, tmp_path):
  argv = [sys.executable, "experiments/train.py", "--workdir", str(tmp_path / "run"), flag]
  if not flag.startswith("--config="):
    argv.insert(2, "--config=mobilellm_jax/configs/base.py:smoke")
  out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.returncode == 2, out.stderr[-2000:]
  assert "Traceback" not in out.stderr, out.stderr[-2000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]


def test_a_workdir_that_is_a_file_is_refused_before_anything_is_written(tmp_path):
  from mobilellm_jax.training.loop import train  # pylint: disable=import-outside-toplevel
  path = tmp_path / "notes.txt"
  path.write_text("keep me")
  with pytest.raises(ConfigError, match="is a file"):
    train(get_config("smoke"), str(path))
  assert path.read_text() == "keep me"


def test_json_written_atomically_keeps_the_old_file_when_writing_fails(tmp_path):
  from mobilellm_jax.training.tracking import write_json  # pylint: disable=import-outside-toplevel
  path = tmp_path / "summary.json"
  write_json(str(path), {"val_loss": 4.5})

  class Unwritable:  # json.dump has written part of the file when it reaches this
    def __str__(self):
      raise RuntimeError("disk full")

  with pytest.raises(RuntimeError, match="disk full"):
    write_json(str(path), {"val_loss": 4.4, "zeroshot": Unwritable()})
  assert json.loads(path.read_text()) == {"val_loss": 4.5}
