"""Opens one split of `config.data.dataset` for the pipeline.

- 'mobilellm_corpus': the embedded TFDS corpus, tokenized once into a cached flat token stream.
- 'jsonl:<path>': MobileLLM's pre-tokenized lines {"token_ids": [...]}, concatenated as they are
  (their lines are already packed sequences), cached the same way.
- any other name: a TFDS catalog dataset read record by record (too big to pre-tokenize: c4).
"""

import dataclasses
import glob
import json
import os
from pathlib import Path

import numpy as np

from mobilellm_jax.data import builder, paths, token_cache
from mobilellm_jax.data.errors import DataError
from mobilellm_jax.data.tokenizer import Tokenizer

JSONL_PREFIX = "jsonl:"


@dataclasses.dataclass(frozen=True)
class TokenStream:
  """A split as one flat token array (documents already joined), stored at `path` (.npy)."""
  path: Path
  num_tokens: int
  description: str


@dataclasses.dataclass(frozen=True)
class TextRecords:
  """A TFDS split as random-access texts (picklable for grain workers)."""
  source: object  # tfds ArrayRecordDataSource
  feature: str

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> str:
    return as_str(self.source[index][self.feature])


def _nonempty(count: int, what: str, fix: str) -> None:
  if count == 0:
    raise DataError(f"{what} is empty; {fix}")


def corpus_stream(root: Path, split: str, tokenizer: Tokenizer) -> TokenStream:
  """The embedded corpus split, tokenized with `tokenizer` (cached next to the dataset)."""
  records = builder.open_corpus_split(root, split)
  dataset_id = json.loads(paths.corpus_info_path(root).read_text())["corpus_sha256"]
  key = token_cache.cache_key(dataset_id, split, tokenizer.sha256)
  path = paths.token_cache_dir(root) / f"{paths.CORPUS_NAME}-{split}-{key}.npy"
  if not token_cache.is_cached(path):
    _nonempty(len(records), f"{paths.CORPUS_NAME} split {split!r}", "rebuild the corpus with "
              "`python -m mobilellm_jax.data.prepare --force`")
    docs = ((as_str(records[i]["text"]), as_str(records[i]["source"]))
            for i in range(len(records)))
    token_cache.tokenize_documents(docs, tokenizer, path)
  meta = token_cache.read_meta(path)
  return TokenStream(path, meta["tokens"], f"{paths.CORPUS_NAME}:{split}")


def as_str(value) -> str:
  """TFDS Text features read back as bytes (str under tfds mocks)."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def jsonl_files(spec: str, split: str, train_split: str) -> list[Path]:
  """'<path>' is a .jsonl file or a folder of them; a split lives in <path>/<split>[.jsonl|/]
  when present, otherwise the whole <path> is the train split."""
  root = Path(os.path.expanduser(spec[len(JSONL_PREFIX):]))
  if not root.exists():
    raise DataError(f"data.dataset={spec!r}: {root} does not exist")
  if root.is_file() and split != train_split:
    raise DataError(f"data.dataset={spec!r} is one file, read as the {train_split!r} split; for a "
                    f"{split!r} split point it at a folder holding {train_split}.jsonl and "
                    f"{split}.jsonl")
  if root.is_dir():
    for candidate in (root / split, root / f"{split}.jsonl"):
      if candidate.exists():
        root = candidate
        break
    else:
      if split != train_split:
        raise DataError(f"data.dataset={spec!r} has no {split!r} split: add {root / split}.jsonl "
                        f"(or a {root / split}/ folder), or set data.eval_split")
  files = ([root] if root.is_file() else
           sorted(Path(p) for p in glob.glob(str(root / "**" / "*.jsonl"), recursive=True)))
  if not files:
    raise DataError(f"data.dataset={spec!r}: no .jsonl files under {root}")
  return files


def jsonl_stream(spec: str, split: str, train_split: str, root: Path,
                 vocab_size: int) -> TokenStream:
  """The token_ids of every line, in file order, checked against vocab_size, cached as .npy."""
  files = jsonl_files(spec, split, train_split)
  identity = [f"{f.absolute()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
  path = paths.token_cache_dir(root) / f"jsonl-{split}-{token_cache.cache_key(*identity)}.npy"
  if not token_cache.is_cached(path):
    pieces, lines = [], 0
    for file in files:
      with open(file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
          if not line.strip():
            continue
          try:
            ids = json.loads(line)["token_ids"]
          except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise DataError(f"{file}:{number}: expected a JSON object with 'token_ids' "
                            f"({type(error).__name__}: {error})") from error
          pieces.append(np.asarray(ids, np.int64))
          lines += 1
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    _nonempty(tokens.size, f"data.dataset={spec!r} split {split!r}", "check the .jsonl files")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
      raise DataError(f"data.dataset={spec!r} has token ids in [{low}, {high}] but "
                      f"model.vocab_size={vocab_size}: set model.vocab_size to the tokenizer "
                      "the ids came from (MobileLLM's: 32000)")
    token_cache.write_tokens(tokens.astype(token_cache.token_dtype(vocab_size)), path,
                             {"lines": lines, "tokens": int(tokens.size), "files": identity})
  meta = token_cache.read_meta(path)
  return TokenStream(path, meta["tokens"], f"{spec}:{split}")


def _import_catalog_modules() -> None:
  """tfds registers catalog builders lazily and stops at the first family that fails to import
  (e.g. without h5py), which hides c4; importing the text family directly registers it."""
  import importlib
  try:
    importlib.import_module("tensorflow_datasets.text")
  except ImportError:
    pass


def tfds_records(name: str, split: str, root: Path, feature: str) -> TextRecords:
  """A TFDS catalog split as texts; the dataset must already be prepared (ArrayRecord) in root."""
  import tensorflow_datasets as tfds
  try:
    tfds.builder_cls(name.split("/")[0].split(":")[0])
  except tfds.core.registered.DatasetNotFoundError:
    _import_catalog_modules()
  try:
    source = tfds.data_source(name, split=split, data_dir=str(root), download=False)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise DataError(f"unknown dataset data.dataset={name!r}: use '{paths.CORPUS_NAME}', a TFDS "
                    "catalog name such as 'lm1b' or 'c4/en', or 'jsonl:<path>'") from error
  except Exception as error:  # pylint: disable=broad-except  (tfds raises many kinds)
    raise DataError(
        f"cannot read TFDS {name!r} split {split!r} from {root} ({type(error).__name__}: "
        f"{str(error)[:300]}). Prepare it once in ArrayRecord format: python -c \"import "
        f"tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='{root}', "
        f"file_format='array_record').download_and_prepare()\"") from error
  _nonempty(len(source), f"TFDS {name!r} split {split!r}", "choose another split")
  records = TextRecords(source, feature)
  try:
    records[0]
  except KeyError as error:
    raise DataError(f"TFDS {name!r} has no feature {feature!r}: set data.text_feature") from error
  return records
