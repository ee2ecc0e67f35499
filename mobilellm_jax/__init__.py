"""mobilellm_jax: scaling-law experiments on small language models (MobileLLM, ICML 2024) in JAX."""

from mobilellm_jax import host_memory as _host_memory

_host_memory.keep_freed_memory()  # before XLA starts its threads (see host_memory.py)
