"""Test-wide settings; must run before jax is imported anywhere.

8 fake CPU devices for the sharding tests. LLVM optimisation level 0 makes each XLA compile ~3x
faster; tests compare implementations against each other and against references, not speed.
The CLIs' persistent compilation cache is off (nothing is written to ~/.cache, and no test
depends on what an earlier one compiled); the tests of the cache turn it on in their own
directory.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ["MOBILELLM_JAX_COMPILE_CACHE"] = "off"
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
