"""Embedded corpus: dedup, the by-document split, the TFDS builder (no TensorFlow), prepare()."""

import json
import random
import sys
import time

import pytest
import tensorflow_datasets as tfds

from mobilellm_jax.data import builder, fetch, paths, prepare
from mobilellm_jax.data.corpus import Document, assign_splits, deduplicate
from mobilellm_jax.data.errors import DataError
from mobilellm_jax.data.testing import synthetic_documents


def _bible_like(num_chapters=120):
  """Two translations of the same chapters plus some novels' chapters."""
  docs = []
  for n in range(num_chapters):
    docs.append(Document(f"kjv chapter {n} text", "kjv", f"kjv/Gen.{n}"))
    docs.append(Document(f"web chapter {n} text", "web", f"web/Gen.{n}"))
    docs.append(Document(f"novel chapter {n} text", "austen", f"austen/emma/{n:03d}"))
  return docs


def test_split_is_by_document_disjoint_and_deterministic():
  docs = _bible_like()
  splits = assign_splits(docs)
  ids = {name: {d.doc_id for d in split} for name, split in splits.items()}
  assert not ids["train"] & ids["validation"] and not ids["train"] & ids["test"]
  assert not ids["validation"] & ids["test"]
  assert set().union(*ids.values()) == {d.doc_id for d in docs}
  # 2% of 240 split keys each held out; both translations of a chapter land together.
  keys = {name: {d.split_key for d in split} for name, split in splits.items()}
  assert len(keys["validation"]) == len(keys["test"]) == round(0.02 * 240)
  assert not keys["train"] & keys["validation"]
  for doc in splits["validation"]:
    if doc.source == "kjv":
      assert f"web/{doc.split_key}" in ids["validation"]
  # Same documents in another order: same assignment (the order inside a split follows the input).
  shuffled = list(docs)
  random.Random(1).shuffle(shuffled)
  again = assign_splits(shuffled)
  assert {n: {d.doc_id for d in s} for n, s in again.items()} == ids


def test_split_needs_enough_documents_and_unique_ids():
  with pytest.raises(DataError, match="at least 3 distinct"):
    assign_splits(_bible_like(1)[:1])
  twice = [Document("a", "x", "x/1"), Document("b", "x", "x/1"), Document("c", "x", "x/2")]
  with pytest.raises(DataError, match="unique"):
    assign_splits(twice)


def test_deduplicate_drops_repeats_and_empty_documents():
  docs = [Document("The  cat\nsat.", "a", "a/1"), Document("the cat sat.", "b", "b/1"),
          Document("   \n", "a", "a/2"), Document("A dog.", "a", "a/3")]
  kept, dropped = deduplicate(docs)
  assert [d.doc_id for d in kept] == ["a/1", "a/3"] and dropped == 2


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("corpus")
  docs = synthetic_documents(num_docs=40, words_per_doc=120)
  records = [(d.text, d.source, d.doc_id) for d in docs]
  records.append((docs[3].text.upper(), "gamma", "gamma/copy-of-3"))  # A duplicate, dropped.
  info = prepare.build_from_documents(records, str(root), vocab_size=600,
                                      missing_sources={"kjv": "SourceUnavailable: test"})
  return root, docs, info


def test_builder_writes_tfds_array_record_readable_without_tensorflow(corpus_dir):
  root, docs, info = corpus_dir
  version_dir = paths.corpus_version_dir(root)
  assert sorted(p.name for p in version_dir.glob("*.array_record-*")) == [
      f"mobilellm_corpus-{s}.array_record-00000-of-00001" for s in ("test", "train", "validation")]
  by_name = tfds.data_source(paths.CORPUS_NAME, data_dir=str(root), download=False)
  from_dir = tfds.builder_from_directory(str(version_dir)).as_data_source()
  seen = {}
  for split in ("train", "validation", "test"):
    expected = info["corpus"]["splits"][split]["documents"]
    assert len(by_name[split]) == len(from_dir[split]) == expected
    records = [by_name[split][i] for i in range(len(by_name[split]))]
    seen[split] = {r["doc_id"].decode() for r in records}
    for record in records:
      assert record["source"].decode() == record["doc_id"].decode().split("/")[0]
  assert not seen["train"] & (seen["validation"] | seen["test"])
  assert not seen["validation"] & seen["test"]
  assert set().union(*seen.values()) == {d.doc_id for d in docs}  # The duplicate is gone.
  assert info["corpus"]["duplicates_dropped"] == 1
  assert info["missing_sources"] == {"kjv": "SourceUnavailable: test"}
  assert "tensorflow" not in sys.modules


def test_builder_alone_cannot_fetch(tmp_path):
  with pytest.raises(DataError, match="python -m mobilellm_jax.data.prepare"):
    corpus = builder.MobilellmCorpus(data_dir=str(tmp_path), file_format="array_record")
    corpus.download_and_prepare()


def test_prepare_again_is_a_noop_and_a_new_vocab_only_trains_a_tokenizer(corpus_dir):
  root, _, info = corpus_dir
  shard = next(paths.corpus_version_dir(root).glob("*train.array_record*"))
  before = shard.stat().st_mtime_ns
  start = time.perf_counter()
  again = prepare.prepare(str(root), vocab_size=600)
  assert time.perf_counter() - start < 2.0
  assert not again["built"] and not again["tokenizer_trained"]
  assert again["tokenizer"] == info["tokenizer"] and again["tokens"] == info["tokens"]
  other = prepare.prepare(str(root), vocab_size=520)
  assert other["tokenizer_trained"] and not other["built"]
  assert other["tokenizer"]["vocab_size"] == 520
  assert other["tokenizer"]["path"].endswith("tokenizer_v520_r2.model")
  assert shard.stat().st_mtime_ns == before
  assert paths.corpus_tokenizer_path(root, 600).exists()
  summary = prepare.summary(other)
  assert "alpha" in summary and "validation chars/token" in summary
  assert "kjv (SourceUnavailable" in summary


def test_info_records_tokens_per_split_and_source(corpus_dir):
  _, _, info = corpus_dir
  tokens = info["tokens"]
  for split in ("train", "validation", "test"):
    assert tokens[split]["tokens"] == sum(tokens[split]["tokens_by_source"].values()) > 0
  assert info["validation_chars_per_token"] > 1.0
  assert len(info["tokenizer"]["sha256"]) == 64
  stored = json.loads(paths.corpus_info_path(info["data_dir"]).read_text())
  assert stored["corpus_sha256"] == info["corpus"]["corpus_sha256"]


def _fake_sources(monkeypatch, readers):
  monkeypatch.setattr(fetch, "SOURCES", tuple(
      fetch.Source(name, "test", read) for name, read in readers.items()))


def test_prepare_builds_from_available_sources_and_records_missing(tmp_path, monkeypatch):
  docs = synthetic_documents(num_docs=12, words_per_doc=80)

  def unavailable(cache_dir):
    raise fetch.SourceUnavailable("`apt-get` not found")

  _fake_sources(monkeypatch, {"good": lambda cache_dir: docs, "bad": unavailable})
  info = prepare.prepare(str(tmp_path), vocab_size=520)
  assert info["built"]
  assert info["missing_sources"] == {"bad": "SourceUnavailable: `apt-get` not found"}
  assert sum(s["documents"] for s in info["corpus"]["splits"].values()) == 12


def test_prepare_fails_clearly_when_no_source_can_be_had(tmp_path, monkeypatch):
  def unavailable(cache_dir):
    raise fetch.SourceUnavailable("apt-get download failed")

  _fake_sources(monkeypatch, {"a": unavailable, "b": unavailable})
  with pytest.raises(DataError, match="none of the corpus sources.*a: SourceUnavailable"):
    prepare.prepare(str(tmp_path), vocab_size=520)
  assert not builder.corpus_exists(tmp_path)
