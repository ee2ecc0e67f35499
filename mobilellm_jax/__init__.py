"""mobilellm_jax: scaling-law experiments on small language models (MobileLLM, ICML 2024) in JAX."""
