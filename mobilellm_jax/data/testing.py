"""A tiny real corpus for tests (this repo's and other modules'): no network, about a second.

    from mobilellm_jax.data.testing import build_tiny_corpus
    info = build_tiny_corpus(tmp_path)          # then config.data.data_dir = str(tmp_path)
"""

import random

from mobilellm_jax.data.corpus import Document
from mobilellm_jax.data.prepare import build_from_documents

_WORDS = (
    "the of and to in a is that he was it for on with as his they be at one have this from or had "
    "by word but what some we can out other were all there when up use your how said an each she "
    "which do their time if will way about many then them write would like so these her long make "
    "thing see him two has look more day could go come did number sound no most people my over "
    "know water than call first who may down side been now find any new work part take get place "
    "made live where after back little only round man year came show every good me give our under "
    "name very through just form sentence great think say help low line differ turn cause much "
    "mean before move right boy old too same tell does set three want air well also play small end "
    "put home read hand port large spell add even land here must big high such follow act why ask "
    "men change went light kind off need house picture try us again animal point mother world near "
    "build self earth father head stand own page should country found answer school grow study "
    "still learn plant cover food sun four between state keep eye never last let thought city tree "
    "cross farm hard start might story saw far sea draw left late run while press close night real "
    "life few north").split()


def synthetic_documents(num_docs: int = 48, words_per_doc: int = 220,
                        seed: int = 0) -> list[Document]:
  """Deterministic pseudo-English documents from two made-up sources ('alpha', 'beta')."""
  rng = random.Random(seed)
  docs = []
  for index in range(num_docs):
    sentences, words = [], 0
    while words < words_per_doc:
      length = rng.randint(4, 14)
      sentence = " ".join(rng.choice(_WORDS) for _ in range(length))
      sentences.append(sentence[0].upper() + sentence[1:] + rng.choice("....?!"))
      words += length
    paragraphs = [" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4)]
    source = "alpha" if index % 2 == 0 else "beta"
    docs.append(Document("\n".join(paragraphs), source, f"{source}/doc{index:03d}"))
  return docs


def build_tiny_corpus(data_dir, vocab_size: int = 512, **document_options) -> dict:
  """Builds the embedded-corpus layout (TFDS + tokenizer + token caches) in data_dir."""
  return build_from_documents(synthetic_documents(**document_options), str(data_dir), vocab_size)
