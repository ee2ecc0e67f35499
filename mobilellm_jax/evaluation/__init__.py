"""Evaluation: zero-shot accuracy on the paper's eight tasks, perplexity and bits-per-byte.

    python -m mobilellm_jax.evaluation.tasks            # once: fetch + cache the eight tasks
    evaluate_zeroshot(model, tokenizer, TASKS)          # {'arc_easy': {'acc', ...}, 'avg_acc', ...}
    perplexity(model, config)                           # {'loss', 'perplexity', 'bits_per_byte'..}

Names are imported lazily, so `python -m mobilellm_jax.evaluation.tasks` runs its module once
(an eager import here would load it twice and make runpy warn).
"""

from mobilellm_jax import lazy

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


__getattr__ = lazy.exports(__name__, _EXPORTS)
