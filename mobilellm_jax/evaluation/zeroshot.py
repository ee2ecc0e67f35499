"""Zero-shot multiple-choice accuracy by log-likelihood ranking (the paper's eight tasks).

For each question, every choice's continuation is scored as sum log p(continuation | context);
`acc` picks the highest sum, `acc_norm` the highest sum per character of the continuation
(lm-eval's acc_norm, OLMES' acc_per_char). Ties go to the first choice (numpy argmax, as lm-eval).
`chance` is the accuracy of guessing uniformly: mean over questions of 1 / num_choices. Averages
are unweighted over tasks, as the paper's "avg" column.
"""

from collections.abc import Sequence

import numpy as np

from mobilellm_jax.configs import eval_task_names
from mobilellm_jax.data import load_tokenizer
from mobilellm_jax.evaluation import tasks as tasks_lib
from mobilellm_jax.evaluation.encoding import encode_pairs
from mobilellm_jax.evaluation.scoring import loglikelihoods


def question_metrics(questions: Sequence[tasks_lib.Question], scores: Sequence[float]) -> dict:
  """acc, acc_norm, chance and num_questions from per-choice log-likelihoods (flattened in
  question order, choices in order)."""
  correct, correct_norm, chance, start = 0, 0, 0.0, 0
  for q in questions:
    choice_scores = np.asarray(scores[start:start + q.num_choices], np.float64)
    start += q.num_choices
    chars = np.asarray([len(c) for c in q.continuations], np.float64)
    correct += int(np.argmax(choice_scores) == q.label)
    correct_norm += int(np.argmax(choice_scores / np.maximum(chars, 1)) == q.label)
    chance += 1.0 / q.num_choices
  if start != len(scores):
    raise ValueError(f"{len(scores)} scores for {start} choices")
  n = len(questions)
  return {"acc": correct / n, "acc_norm": correct_norm / n, "chance": chance / n,
          "num_questions": n}


def score_questions(model, tokenizer, questions: Sequence[tasks_lib.Question], *,
                    max_len: int | None = None, batch_size: int = 32) -> np.ndarray:
  """Per-choice log-likelihoods of the questions, flattened (question order, choice order)."""
  pairs = [pair for q in questions for pair in zip(q.contexts, q.continuations)]
  return loglikelihoods(model, encode_pairs(tokenizer, pairs), max_len=max_len,
                        batch_size=batch_size)


def evaluate_zeroshot(model, tokenizer, tasks: Sequence[str], *, max_examples: int = 0,
                      batch_size: int = 32, max_len: int | None = None,
                      data_dir: str | None = None) -> dict:
  """{task: {'acc', 'acc_norm', 'chance', 'num_questions'}, 'avg_acc', 'avg_acc_norm',
  'avg_chance'} on prepared tasks (see tasks.py).

  model: an nnx Decoder or its (graphdef, state) from nnx.split. max_examples: first N questions
  per task (0 = all). max_len: longest window scored (default model.max_seq_len); pass the
  training length (data.seq_len) for a trained model, since positions past it were never trained.
  All tasks' requests are scored in one length-sorted pass, so batches are full."""
  names = [tasks_lib.canonical_name(t) for t in tasks]
  if not names:
    raise ValueError("no zero-shot tasks given; choose from " + ", ".join(tasks_lib.TASKS))
  questions = {t: tasks_lib.load_task(t, data_dir, max_examples) for t in names}
  everything = [q for t in names for q in questions[t]]
  scores = score_questions(model, tokenizer, everything, max_len=max_len, batch_size=batch_size)
  results, start = {}, 0
  for t in names:
    count = sum(q.num_choices for q in questions[t])
    results[t] = question_metrics(questions[t], scores[start:start + count])
    start += count
  for metric in ("acc", "acc_norm", "chance"):
    results[f"avg_{metric}"] = float(np.mean([results[t][metric] for t in names]))
  return results


def zeroshot_from_config(model, config, tokenizer=None) -> dict:
  """evaluate_zeroshot with config.eval's tasks, max_examples and batch_size, the corpus tokenizer,
  and windows of data.seq_len tokens (the length the model was trained on). {} if no tasks."""
  names = eval_task_names(config)
  if not names:
    return {}
  return evaluate_zeroshot(model, tokenizer or load_tokenizer(config), names,
                           max_examples=config.eval.max_examples,
                           batch_size=config.eval.batch_size, max_len=config.data.seq_len,
                           data_dir=config.data.data_dir or None)
