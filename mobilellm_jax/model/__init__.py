"""The model: the decoder (decoder.py), its layer-sharing schedule (sharing.py), what is computed
from its config alone (counting.py: parameters, FLOPs, the width solver; footprint.py: the phone's
view), and decoding with a KV cache (generation.py).

    from mobilellm_jax.model import ModelArgs, build_model

Names are imported lazily, so `mobilellm_jax.model.counting` (no JAX) stays light and
`python -m mobilellm_jax.model.counting` runs its module once.
"""

from mobilellm_jax import lazy

_EXPORTS = {name: "decoder" for name in (
    "ModelArgs", "build_model", "Decoder", "Block", "Attention", "FeedForward", "RMSNorm", "PreNorm",
    "apply_rope", "rope_sin_cos", "init_std")}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy.exports(__name__, _EXPORTS)
