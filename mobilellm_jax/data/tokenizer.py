"""SentencePiece BPE: trained deterministically on the corpus's train split, or a user's model."""

import hashlib
import io
import os
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from mobilellm_jax.data import paths
from mobilellm_jax.data.errors import DataError

# Fixed trainer settings: same input lines -> byte-identical model file (checked by the tests).
# Lossless as LLaMA's tokenizer: no normalisation, and a character outside the vocabulary becomes
# its UTF-8 bytes (256 byte pieces), never <unk>; digits are single pieces, so numbers split into
# digits. Every printable ASCII character is a piece even when the corpus rarely uses it (the
# zero-shot prompts' 'Question:', digits, brackets). No sampling or shuffling of input lines;
# '\n' is its own piece so line structure survives.
_TRAINER_OPTIONS = dict(
    model_type="bpe", character_coverage=0.9995, split_digits=True, byte_fallback=True,
    required_chars="".join(c for c in string.printable if not c.isspace()),
    user_defined_symbols=["\n"], normalization_rule_name="identity", remove_extra_whitespaces=False,
    unk_id=0, bos_id=1, eos_id=2, pad_id=-1, max_sentence_length=1 << 16,
    shuffle_input_sentence=False, input_sentence_size=0, num_threads=2, minloglevel=2)
# Change them together with paths.TOKENIZER_RECIPE: a corpus tokenizer of another recipe (and the
# token caches made with it) is then found stale and rebuilt by prepare, never mixed with this one.
# 256 byte pieces, 3 specials, '\n', the printable ASCII characters and some room for merges.
MIN_VOCAB_SIZE = 512


def sha256_file(path: str | Path) -> str:
  return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_tokenizer(texts: Iterable[str], vocab_size: int, model_path: str | Path) -> Path:
  """Trains on the non-empty lines of `texts`; writes model_path atomically."""
  if vocab_size < MIN_VOCAB_SIZE:
    raise DataError(f"a {vocab_size}-piece tokenizer is too small: byte fallback alone takes 256 "
                    f"pieces; use --vocab_size {MIN_VOCAB_SIZE} or more")
  lines = [line for text in texts for line in text.split("\n") if line.strip()]
  if not lines:
    raise DataError("cannot train a tokenizer on an empty train split")
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model,
                                   vocab_size=vocab_size, **_TRAINER_OPTIONS)
  except RuntimeError as error:  # e.g. "Vocabulary size too high" on a tiny corpus.
    raise DataError(f"SentencePiece could not train a {vocab_size}-piece BPE on {len(lines)} "
                    f"lines: {error}; use a smaller --vocab_size or a bigger corpus") from error
  model_path = Path(model_path)
  model_path.parent.mkdir(parents=True, exist_ok=True)
  partial = model_path.with_name(f"{model_path.name}.tmp{os.getpid()}")
  partial.write_bytes(model.getvalue())
  os.replace(partial, model_path)
  return model_path


class Tokenizer:
  """A SentencePiece model with the handful of things the pipeline and the runs need."""

  def __init__(self, path: str | Path):
    self.path = str(path)
    self.sha256 = sha256_file(path)
    self._sp = spm.SentencePieceProcessor(model_file=self.path)
    self.vocab_size = self._sp.get_piece_size()
    self.eos_id = self._sp.eos_id()
    self.unk_id = self._sp.unk_id()
    # Pieces that stand for one UTF-8 byte (byte fallback); empty for a model without it.
    self.byte_piece_ids = frozenset(i for i in range(self.vocab_size) if self._sp.is_byte(i))
    if self.eos_id < 0:
      raise DataError(f"tokenizer {self.path} defines no EOS piece (eos_id=-1); the pipeline needs "
                      "one as the document boundary: retrain it with eos_id set")

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return self._sp.encode(list(texts))

  def decode(self, ids: Sequence[int]) -> str:
    return self._sp.decode([int(i) for i in ids])

  def info(self) -> dict:
    return {"path": self.path, "sha256": self.sha256, "vocab_size": self.vocab_size,
            "eos_id": self.eos_id, "byte_pieces": len(self.byte_piece_ids)}

  def __getstate__(self):  # Picklable for grain worker processes: reload from the file.
    return {"path": self.path}

  def __setstate__(self, state):
    self.__init__(state["path"])


def tokenizer_path(config) -> Path:
  """data.tokenizer_path, or the corpus tokenizer with model.vocab_size pieces."""
  if config.data.tokenizer_path:
    return Path(os.path.expanduser(config.data.tokenizer_path))
  return paths.corpus_tokenizer_path(paths.data_dir(config), config.model.vocab_size)


def load_tokenizer(config) -> Tokenizer:
  """The tokenizer a run uses; its size must equal config.model.vocab_size."""
  path = tokenizer_path(config)
  vocab_size = config.model.vocab_size
  if not path.exists():
    if config.data.tokenizer_path:
      raise DataError(f"data.tokenizer_path={str(path)!r} does not exist; point it at a "
                      "SentencePiece .model file")
    stale = paths.stale_tokenizer_paths(path.parent.parent, vocab_size)
    if stale:
      raise DataError(f"{stale[0]} was trained by an older tokenizer recipe (this version needs "
                      f"{path.name}: byte fallback, no <unk>); rebuild it with `python -m "
                      f"mobilellm_jax.data.prepare --data_dir {path.parent.parent} "
                      f"--vocab_size {vocab_size}`")
    raise DataError(f"no {vocab_size}-piece tokenizer at {path}: run `python -m "
                    f"mobilellm_jax.data.prepare --data_dir {path.parent.parent} "
                    f"--vocab_size {vocab_size}`")
  tokenizer = Tokenizer(path)
  if tokenizer.vocab_size != vocab_size:
    raise DataError(f"tokenizer {path} has {tokenizer.vocab_size} pieces but model.vocab_size="
                    f"{vocab_size}: set --config.model.vocab_size={tokenizer.vocab_size} or use a "
                    f"tokenizer with {vocab_size} pieces")
  return tokenizer
