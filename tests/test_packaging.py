"""pyproject.toml declares what requirements.txt pins: `pip install .` gets the same runtime as
`pip install -r requirements.txt`, and the test extra the same as requirements-test.txt."""

import os
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pins(name: str) -> set[str]:
  with open(os.path.join(REPO, name)) as f:
    lines = (line.split("#")[0].strip() for line in f)
    return {line for line in lines if line and not line.startswith("-")}


def test_pyproject_dependencies_are_the_requirements_pins():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  assert set(project["dependencies"]) == _pins("requirements.txt")
  assert set(project["optional-dependencies"]["test"]) == _pins("requirements-test.txt")


def test_the_runtime_pulls_no_test_or_reference_packages():
  runtime = {pin.split("==")[0] for pin in _pins("requirements.txt")}
  assert not runtime & {"torch", "transformers", "pytest"}


def test_ci_runs_exactly_the_readme_test_command():
  with open(os.path.join(REPO, "README.md")) as f:
    readme = [line.split("#")[0].strip() for line in f if "# the tests (.ci/run)" in line]
  with open(os.path.join(REPO, ".ci", "run")) as f:
    ci = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  assert len(readme) == 1 and readme[0].startswith("pip install -r requirements-test.txt")
  assert ci[-1] == readme[0]
