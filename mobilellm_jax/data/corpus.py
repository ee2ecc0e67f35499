"""Documents of the embedded corpus: cleaning, de-duplication and the by-document split."""

import dataclasses
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

from mobilellm_jax.data.errors import DataError

SPLITS = ("train", "validation", "test")
# Held-out shares, counted in split keys (a Bible chapter, a novel's chapter, a play's act).
HELD_OUT_FRACTIONS = {"validation": 0.02, "test": 0.02}


@dataclasses.dataclass(frozen=True)
class Document:
  """One document; `doc_id` is '<source>/<work key>', e.g. 'kjv/Gen.1' or 'austen/emma/012'."""
  text: str
  source: str
  doc_id: str

  @property
  def split_key(self) -> str:
    """Documents sharing it go to the same split: 'kjv/Gen.1' and 'web/Gen.1' are one chapter."""
    return self.doc_id.split("/", 1)[-1]


def as_document(record) -> Document:
  """Accepts a Document or a (text, source, doc_id) tuple."""
  if isinstance(record, Document):
    return record
  text, source, doc_id = record
  return Document(text=text, source=source, doc_id=doc_id)


def clean_text(text: str) -> str:
  """NFC, no trailing spaces, at most one blank line in a row, no leading/trailing blank lines."""
  text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
  lines = [line.rstrip() for line in text.split("\n")]
  text = "\n".join(lines)
  return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def fingerprint(text: str) -> str:
  """Hash of the text with whitespace and case folded: equal fingerprints are duplicates."""
  folded = " ".join(text.lower().split())
  return hashlib.sha256(folded.encode("utf-8")).hexdigest()


def deduplicate(documents: Iterable[Document]) -> tuple[list[Document], int]:
  """Drops empty documents and repeats of an earlier text (the first one stays).

  Returns (kept, number dropped)."""
  seen, kept, dropped = set(), [], 0
  for doc in documents:
    key = fingerprint(doc.text)
    if not doc.text.strip() or key in seen:
      dropped += 1
      continue
    seen.add(key)
    kept.append(doc)
  return kept, dropped


def _key_rank(split_key: str) -> str:
  return hashlib.sha256(split_key.encode("utf-8")).hexdigest()


def assign_splits(documents: Sequence[Document],
                  fractions: dict[str, float] = HELD_OUT_FRACTIONS) -> dict[str, list[Document]]:
  """Splits by split key: keys ranked by hash, the first ones held out (at least one per held-out
  split when there are enough keys), the rest train. Deterministic; a key never straddles splits."""
  doc_ids = [doc.doc_id for doc in documents]
  if len(set(doc_ids)) != len(doc_ids):
    dupes = sorted({d for d in doc_ids if doc_ids.count(d) > 1})[:5]
    raise DataError(f"doc_id must be unique; repeated: {dupes}")
  keys = sorted({doc.split_key for doc in documents}, key=_key_rank)
  held_out = [name for name in SPLITS if name != "train"]
  if len(keys) < len(held_out) + 1:
    raise DataError(f"need at least {len(held_out) + 1} distinct documents to split "
                    f"train/{'/'.join(held_out)}, got {len(keys)}")
  split_of, start = {}, 0
  for name in held_out:
    count = max(1, round(fractions[name] * len(keys)))
    for key in keys[start:start + count]:
      split_of[key] = name
    start += count
  splits = {name: [] for name in SPLITS}
  for doc in documents:  # Keeps the input order inside each split.
    splits[split_of.get(doc.split_key, "train")].append(doc)
  return splits
