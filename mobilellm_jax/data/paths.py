"""Where the data layer keeps things: one data_dir, the TFDS layout inside it."""

import os
from pathlib import Path

CORPUS_NAME = "mobilellm_corpus"  # The TFDS name of the embedded corpus (builder.MobilellmCorpus).
CORPUS_VERSION = "1.0.0"
# The corpus tokenizer's training recipe (tokenizer._TRAINER_OPTIONS); bump it with them. It is part
# of the tokenizer's file name, so a tokenizer of another recipe is never picked up as this one.
TOKENIZER_RECIPE = 2


def resolve_data_dir(data_dir: str | None = None) -> Path:
  """data_dir, else $MOBILELLM_DATA_DIR, else ~/.cache/mobilellm_jax."""
  chosen = data_dir or os.environ.get("MOBILELLM_DATA_DIR") or "~/.cache/mobilellm_jax"
  return Path(os.path.expanduser(chosen)).absolute()


def data_dir(config) -> Path:
  return resolve_data_dir(config.data.data_dir)


def corpus_dir(root: Path) -> Path:
  """TFDS puts the dataset's versions here; the tokenizers and token caches sit next to them."""
  return Path(root) / CORPUS_NAME


def corpus_version_dir(root: Path) -> Path:
  return corpus_dir(root) / CORPUS_VERSION


def corpus_info_path(root: Path) -> Path:
  return corpus_dir(root) / "corpus_info.json"


def corpus_tokenizer_path(root: Path, vocab_size: int) -> Path:
  return corpus_dir(root) / f"tokenizer_v{vocab_size}_r{TOKENIZER_RECIPE}.model"


def stale_tokenizer_paths(root: Path, vocab_size: int) -> list[Path]:
  """vocab_size tokenizers of other recipes (recipe 1 had no '_r' in its name)."""
  current = corpus_tokenizer_path(root, vocab_size)
  folder = corpus_dir(root)
  found = [*folder.glob(f"tokenizer_v{vocab_size}.model"),
           *folder.glob(f"tokenizer_v{vocab_size}_r*.model")]
  return sorted(path for path in found if path != current)


def token_cache_dir(root: Path) -> Path:
  return Path(root) / "token_cache"


def download_dir(root: Path) -> Path:
  return Path(root) / "downloads"
