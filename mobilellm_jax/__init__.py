"""mobilellm_jax: scaling-law experiments on small language models (MobileLLM, ICML 2024) in JAX.

Importing it changes nothing in the process; the command-line entry points set the process up
(runtime.prepare_process).
"""
