"""Flat token streams on disk: a split tokenized once, documents joined by EOS, memory-mapped.

A cache file is keyed by what produced it (dataset identity, split, tokenizer hash), so a new
tokenizer or a rebuilt corpus gets a new file and stale ones are never read.
"""

import collections
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

_ENCODE_BATCH = 256  # Documents per SentencePiece batch call.


def token_dtype(vocab_size: int):
  return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32


def cache_key(*parts: str) -> str:
  return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:20]


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  partial = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
  write(partial)
  os.replace(partial, path)  # Concurrent writers (several hosts) each land a whole file.


def read_meta(path: Path) -> dict:
  return json.loads(path.with_suffix(".json").read_text())


def tokenize_documents(documents: Iterable[tuple[str, str]], tokenizer, path: Path) -> dict:
  """Writes EOS-joined tokens of (text, source) pairs to path (.npy) with a .json of counts."""
  pieces, by_source, chars = [], collections.Counter(), 0
  eos = np.array([tokenizer.eos_id], np.int64)
  batch = []

  def flush():
    for (_, source), ids in zip(batch, tokenizer.encode_batch([t for t, _ in batch])):
      pieces.append(np.asarray(ids, np.int64))
      pieces.append(eos)
      by_source[source] += len(ids) + 1
    batch.clear()

  num_docs = 0
  for text, source in documents:
    batch.append((text, source))
    chars += len(text)
    num_docs += 1
    if len(batch) == _ENCODE_BATCH:
      flush()
  flush()
  tokens = (np.concatenate(pieces) if pieces else np.zeros(0, np.int64))
  tokens = tokens.astype(token_dtype(tokenizer.vocab_size))
  counts = np.bincount(tokens, minlength=tokenizer.vocab_size)
  meta = {"documents": num_docs, "tokens": int(tokens.size), "chars": chars,
          "tokens_by_source": dict(sorted(by_source.items())),
          # EOS excluded: the tokenizer's compression of the text itself.
          "chars_per_token": round(chars / max(1, tokens.size - num_docs), 4),
          # Characters the tokenizer could not represent (0 with byte fallback), and those it
          # spelled as UTF-8 bytes.
          "unk_tokens": int(counts[tokenizer.unk_id]) if tokenizer.unk_id >= 0 else 0,
          "byte_tokens": int(counts[sorted(tokenizer.byte_piece_ids)].sum()),
          "tokenizer_sha256": tokenizer.sha256}
  write_tokens(tokens, path, meta)
  return meta


def write_tokens(tokens: np.ndarray, path: Path, meta: dict) -> None:
  """The .npy first, then its .json: a cache counts as present only once both exist."""
  _write_atomic(path, lambda p: np.save(p, tokens))
  _write_atomic(path.with_suffix(".json"), lambda p: p.write_text(json.dumps(meta, indent=1)))


def is_cached(path: Path) -> bool:
  return path.exists() and path.with_suffix(".json").exists()
