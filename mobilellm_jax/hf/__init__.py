"""Hugging Face Llama interop: state dicts (weights.py), tokenizer files (tokenizer.py), model
directories (directory.py) and run-level export / import (runs.py; CLI: python -m mobilellm_jax.hf).
"""

from mobilellm_jax.hf.directory import read_directory, write_directory
from mobilellm_jax.hf.runs import export_run, init_from_hf
from mobilellm_jax.hf.weights import (SharingMismatch, hf_config_dict, load_hf_state_dict,
                                      params_from_state_dict, state_dict_from_params,
                                      to_hf_state_dict)

__all__ = ["SharingMismatch", "export_run", "hf_config_dict", "init_from_hf", "load_hf_state_dict",
           "params_from_state_dict", "read_directory", "state_dict_from_params",
           "to_hf_state_dict", "write_directory"]
