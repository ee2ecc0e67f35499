"""Evaluation: zero-shot accuracy on the paper's eight tasks, perplexity and bits-per-byte.

    python -m mobilellm_jax.evaluation.tasks            # once: fetch + cache the eight tasks
    evaluate_zeroshot(model, tokenizer, TASKS)          # {'arc_easy': {'acc', ...}, 'avg_acc', ...}
    perplexity(model, config)                           # {'loss', 'perplexity', 'bits_per_byte'..}

Names are imported lazily, so `python -m mobilellm_jax.evaluation.tasks` runs its module once
(an eager import here would load it twice and make runpy warn).
"""

import importlib

_EXPORTS = {
    "TASKS": "tasks", "LICENSES": "tasks", "Question": "tasks", "load_task": "tasks",
    "prepare_tasks": "tasks",
    "tasks_prepared": "tasks",
    "evaluate_zeroshot": "zeroshot", "question_metrics": "zeroshot",
    "zeroshot_from_config": "zeroshot",
    "loglikelihoods": "scoring",
    "perplexity": "lm_metrics", "perplexity_of_text": "lm_metrics",
    "perplexity_of_file": "lm_metrics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
  globals()[name] = value  # Later lookups skip __getattr__.
  return value
