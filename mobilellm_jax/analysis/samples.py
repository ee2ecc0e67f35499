"""Generated text of a sweep's best and worst run (lowest and highest val loss), for REPORT.md.

A run with a checkpoint generates from it (same prompts, sampling and seed for every run) and the
result is written to `<run>/samples.json` (prompts, settings, step, texts: a few KB), so a
results folder committed without checkpoints still shows the text its runs produced. A run with
no checkpoint shows the samples.json written earlier, if any.
"""

import json
import os
import re

import pandas as pd

SAMPLES_FILE = "samples.json"
PROMPTS = ("It is a truth universally acknowledged", "The water")
# Mild sampling: greedy text of small models loops on one phrase, which hides the difference
# between a good and a bad run; the fixed seed makes the draw repeatable.
SETTINGS = dict(max_new_tokens=32, temperature=0.7, top_k=40, top_p=1.0, seed=0)


def has_checkpoint(run_dir: str) -> bool:
  """Whether run_dir/checkpoints holds a saved step (a numbered directory)."""
  directory = os.path.join(run_dir, "checkpoints")
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def generate(run_dir: str, prompts=PROMPTS, **settings) -> dict:
  """Samples from the run's newest checkpoint, written to run_dir/samples.json and returned:
  {'prompts', 'texts' (prompt + continuation, one per prompt), 'step', and the settings}."""
  # Deferred: loading a sweep's tables must not pull in the model and the trainer.
  from mobilellm_jax.data import load_tokenizer  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.model.generation import Generator, Sampling  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.model import ModelArgs  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.training.loop import restore_for_eval  # pylint: disable=import-outside-toplevel
  settings = SETTINGS | settings
  config, _, params, step = restore_for_eval(run_dir)
  tokenizer = load_tokenizer(config)
  generator = Generator(params, ModelArgs.from_config(config.model))
  # After EOS, the document boundary the runs trained with (as generate.py does).
  encoded = [[tokenizer.eos_id] + tokenizer.encode(p) for p in prompts]
  outputs = generator(encoded, settings["max_new_tokens"],
                      Sampling(settings["temperature"], settings["top_k"], settings["top_p"]),
                      eos_id=tokenizer.eos_id, seed=settings["seed"])
  texts = []
  for ids, new in zip(encoded, outputs):
    new = new[:-1] if new and new[-1] == tokenizer.eos_id else new
    texts.append(tokenizer.decode(ids[1:] + new))  # with the prompt: keeps the leading space
  samples = dict(prompts=list(prompts), texts=texts, step=int(step), **settings)
  path = os.path.join(run_dir, SAMPLES_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump(samples, f, indent=1, ensure_ascii=False)
  os.replace(path + ".tmp", path)
  return samples


def read(run_dir: str) -> dict | None:
  """The samples.json written earlier, or None."""
  path = os.path.join(run_dir, SAMPLES_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def for_run(run_dir: str, prompts=PROMPTS, **settings) -> tuple[dict | None, str]:
  """(samples, where they came from): fresh from the checkpoint when the run has one, else the
  persisted samples.json; (None, why) when neither gives any."""
  if has_checkpoint(run_dir):
    try:
      return generate(run_dir, prompts, **settings), "generated from the newest checkpoint"
    except Exception as error:  # pylint: disable=broad-except
      # A report must not fail on one unreadable run (missing tokenizer, damaged checkpoint).
      reason = f"checkpoint not usable ({type(error).__name__}: {str(error).splitlines()[0]})"
      persisted = read(run_dir)
      return (persisted, f"persisted samples.json; {reason}") if persisted else (None, reason)
  persisted = read(run_dir)
  if persisted:
    return persisted, (f"read from its {SAMPLES_FILE}, sampled from its newest checkpoint (no "
                       "checkpoint here now)")
  return None, f"no checkpoint and no {SAMPLES_FILE}"


def best_and_worst(runs: pd.DataFrame) -> list[tuple[str, pd.Series]]:
  """[('best', row), ('worst', row)] by val_loss among runs with a run directory (one entry
  when only one such run has a loss; none when no run does)."""
  if "val_loss" not in runs or "run_dir" not in runs:
    return []
  ranked = runs[runs["val_loss"].notna() & runs["run_dir"].notna()].sort_values("val_loss")
  if ranked.empty:
    return []
  picks = [("best", ranked.iloc[0])]
  if len(ranked) > 1:
    picks.append(("worst", ranked.iloc[-1]))
  return picks


def markdown(runs: pd.DataFrame, prompts=PROMPTS, **settings) -> list[str]:
  """REPORT.md lines: each of the best and the worst run's samples (prompt in bold), or one line
  saying why there are none."""
  picks = best_and_worst(runs)
  if not picks:
    return ["No samples: no run has a validation loss and a run directory.", ""]
  found = [(label, row, *for_run(row["run_dir"], prompts, **settings)) for label, row in picks]
  if not any(samples for _, _, samples, _ in found):
    names = ", ".join(f"{label} `{os.path.basename(row['run_dir'])}` ({why})"
                      for label, row, _, why in found)
    return [f"No samples: {names}.", ""]
  lines = []
  for label, row, samples, why in found:
    name = os.path.basename(os.path.normpath(row["run_dir"]))
    lines.append(f"**{label.capitalize()} run** `{name}` (val loss {row['val_loss']:.4f}): "
                 + (f"{why}" if samples is None else
                    f"step {samples['step']}, temperature {samples['temperature']}, top_k "
                    f"{samples['top_k']}, seed {samples['seed']}; {why}."))
    lines.append("")
    for prompt, text in zip(samples["prompts"], samples["texts"]) if samples else ():
      continuation = text[len(prompt):] if text.startswith(prompt) else text
      # One line (a newline would end the list item), its leading space kept.
      lines.append(f"- **{prompt}**" + re.sub(r"\s+", " ", continuation))
    lines.append("")
  return lines
