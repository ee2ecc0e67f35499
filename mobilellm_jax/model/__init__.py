"""The model: the decoder (decoder.py), its layer-sharing schedule (sharing.py), what is computed
from its config alone (counting.py: parameters, FLOPs, the width solver; footprint.py: the phone's
view), and decoding with a KV cache (generation.py).

    from mobilellm_jax.model import ModelArgs, build_model

Names are imported lazily, so `mobilellm_jax.model.counting` (no JAX) stays light and
`python -m mobilellm_jax.model.counting` runs its module once.
"""

import importlib

_EXPORTS = {name: "decoder" for name in (
    "ModelArgs", "build_model", "Decoder", "Block", "Attention", "FeedForward", "RMSNorm",
    "apply_rope", "rope_sin_cos", "init_std")}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
  globals()[name] = value  # Later lookups skip __getattr__.
  return value
