"""Test-wide settings; must run before jax is imported anywhere.

8 fake CPU devices for the sharding tests. LLVM optimisation level 0 makes each XLA compile ~3x
faster; tests compare implementations against each other and against references, not speed.
The CLIs' persistent compilation cache is off (nothing is written to ~/.cache, and no test
depends on what an earlier one compiled); the tests of the cache turn it on in their own
directory.
"""

import os

import pytest

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ["MOBILELLM_JAX_COMPILE_CACHE"] = "off"
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  """A tiny corpus in the embedded corpus' layout (data/testing.py), built once per test module."""
  from mobilellm_jax.data.testing import build_tiny_corpus  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp("tiny_corpus")
  build_tiny_corpus(root)
  return str(root)
