"""Where the CLIs' compilation cache goes, and how it is turned off. That a resumed run loads its
train step from it is tested with the SIGKILL test (test_train.py)."""

import os
import re

import jax

from mobilellm_jax.training import compile_cache


def test_default_directory_is_per_cpu_under_the_users_cache():
  fingerprint = compile_cache.host_fingerprint()
  assert re.fullmatch(r"[0-9a-f]{12}", fingerprint)
  assert fingerprint == compile_cache.host_fingerprint()
  assert compile_cache.resolve_dir({}) == os.path.join(
      os.path.expanduser("~"), ".cache", "mobilellm_jax", "xla", fingerprint)


def test_environment_picks_the_directory_or_turns_it_off():
  assert compile_cache.resolve_dir({compile_cache.ENV: "~/elsewhere"}) == os.path.expanduser(
      "~/elsewhere")
  for off in ("", "0", "off", "OFF", "none"):
    assert compile_cache.resolve_dir({compile_cache.ENV: off}) is None


def test_off_leaves_jax_alone():
  assert os.environ[compile_cache.ENV] == "off"  # conftest.py
  assert compile_cache.enable() is None
  assert not jax.config.jax_compilation_cache_dir


def test_a_directory_that_cannot_be_made_is_reported_and_the_run_goes_on(tmp_path, monkeypatch,
                                                                         capsys):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  monkeypatch.setenv(compile_cache.ENV, str(blocker / "xla"))
  assert compile_cache.enable() is None
  assert not jax.config.jax_compilation_cache_dir
  err = capsys.readouterr().err
  assert "compilation cache off" in err and compile_cache.ENV in err
