"""REPORT.md's samples: the best and the worst run generate from their checkpoints with the same
prompts and seed, the samples persist in each run's samples.json, a copy of the sweep without
checkpoints shows those persisted samples, and without either the report says so in one line."""

import json
import os
import re
import shutil

import pytest

from mobilellm_jax.analysis import report, samples
from mobilellm_jax.configs import get_config
from mobilellm_jax.data.testing import build_tiny_corpus
from mobilellm_jax.training.loop import train

# Every test here trains and exports or samples a run first.
pytestmark = pytest.mark.slow

SECTION = "# Samples: the best and the worst run"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
  """A sweep of two smoke runs: 'trained' (40 steps at a high LR) and 'barely' (2 steps), so
  val loss ranks them."""
  data_dir = tmp_path_factory.mktemp("data")
  build_tiny_corpus(data_dir)
  sweep_dir = tmp_path_factory.mktemp("sweeps") / "smoke_pair"
  for name, steps in (("trained", 40), ("barely", 2)):
    config = get_config("smoke")
    config.data.data_dir = str(data_dir)
    config.tracking.wandb_mode = "disabled"
    config.train.num_steps = steps
    config.optim.peak_lr = 1e-2
    train(config, str(sweep_dir / name))
  return sweep_dir


def _section(text: str) -> list[str]:
  """The samples section's non-empty lines."""
  after = text.split(SECTION, 1)[1].split("\n#", 1)[0]
  return [line for line in after.splitlines()[1:] if line.strip()]


def _copy_without(sweep_dir, out, *names):
  shutil.copytree(sweep_dir, out, ignore=shutil.ignore_patterns("REPORT.md", "*.png", *names))
  return out


def test_report_generates_and_persists_best_and_worst_samples(sweep):
  losses = {name: json.loads((sweep / name / "summary.json").read_text())["val_loss"]
            for name in ("trained", "barely")}
  assert losses["trained"] < losses["barely"]
  text = open(report.write_report(str(sweep))).read()
  lines = _section(text)
  best = next(i for i, line in enumerate(lines) if line.startswith("**Best run** `trained`"))
  worst = next(i for i, line in enumerate(lines) if line.startswith("**Worst run** `barely`"))
  assert "step 40" in lines[best] and "step 2," in lines[worst]
  assert "generated from the newest checkpoint" in lines[best]
  persisted = {name: json.loads((sweep / name / samples.SAMPLES_FILE).read_text())
               for name in ("trained", "barely")}
  for name, saved in persisted.items():
    assert saved["prompts"] == list(samples.PROMPTS) and saved["seed"] == samples.SETTINGS["seed"]
    assert len(saved["texts"]) == len(samples.PROMPTS)
    for prompt, sample in zip(saved["prompts"], saved["texts"]):
      assert sample.startswith(prompt) and len(sample) > len(prompt) + 5
  assert persisted["trained"]["texts"] != persisted["barely"]["texts"]
  # The report lists each prompt under each run, continuation included.
  for start, name in ((best, "trained"), (worst, "barely")):
    items = lines[start + 1:start + 1 + len(samples.PROMPTS)]
    assert [item.split("**")[1] for item in items] == list(samples.PROMPTS)
    first = persisted[name]["texts"][0][len(samples.PROMPTS[0]):].split()[0]
    assert first in items[0]
  # Same checkpoint, prompts and seed: the same text again.
  assert samples.generate(str(sweep / "trained"))["texts"] == persisted["trained"]["texts"]


def test_report_without_checkpoints_shows_the_persisted_samples(sweep, tmp_path):
  report.write_report(str(sweep))  # writes samples.json into both runs
  committed = _copy_without(sweep, tmp_path / "smoke_pair", "checkpoints")
  assert not samples.has_checkpoint(str(committed / "trained"))
  text = open(report.write_report(str(committed))).read()
  lines = _section(text)
  assert any(line.startswith("**Best run** `trained`") and "no checkpoint" in line
             for line in lines)
  saved = json.loads((committed / "barely" / samples.SAMPLES_FILE).read_text())
  prompt = saved["prompts"][1]
  expected = f"- **{prompt}**" + re.sub(r"\s+", " ", saved["texts"][1][len(prompt):])
  assert expected.rstrip() in [line.rstrip() for line in lines]


def test_report_without_checkpoints_or_samples_says_so_in_one_line(sweep, tmp_path):
  bare = _copy_without(sweep, tmp_path / "smoke_pair", "checkpoints", samples.SAMPLES_FILE)
  text = open(report.write_report(str(bare))).read()
  lines = _section(text)
  assert len(lines) == 1 and lines[0].startswith("No samples: best `trained`")
  assert "no checkpoint and no samples.json" in lines[0]
  assert not os.path.exists(bare / "trained" / samples.SAMPLES_FILE)
  # Off, the report has no samples section at all.
  assert SECTION not in open(report.write_report(str(bare), with_samples=False)).read()
