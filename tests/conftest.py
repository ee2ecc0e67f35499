"""Test-wide settings; must run before jax is imported anywhere.

8 fake CPU devices for the sharding tests. LLVM optimisation level 0 makes each XLA compile ~3x
faster; tests compare implementations against each other and against references, not speed.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("WANDB_MODE", "disabled")
