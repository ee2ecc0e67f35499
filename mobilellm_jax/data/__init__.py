"""Data layer: the embedded corpus (TFDS, no TensorFlow), its tokenizer, and grain pipelines.

    python -m mobilellm_jax.data.prepare      # once: fetch, build, train the tokenizer
    it = make_train_iterator(config)          # {'inputs', 'targets'} int32 [B_local, seq_len]
"""

from mobilellm_jax.data.errors import DataError
from mobilellm_jax.data.pipeline import check_eval_split, make_eval_iterator, make_train_iterator
from mobilellm_jax.data.tokenizer import Tokenizer, load_tokenizer

__all__ = ["DataError", "Tokenizer", "check_eval_split", "load_tokenizer", "make_eval_iterator",
           "make_train_iterator"]
