"""(context, continuation) strings -> token ids the way lm-eval-harness does it, and the scoring
window of one request.

Tokenization (lm-eval's `_encode_pair`): trailing spaces of the context move to the front of the
continuation; then `whole = encode(context + continuation)`, `ctx = encode(context)`, and the
continuation's tokens are `whole[len(ctx):]`. Encoding the continuation on its own would be wrong
with SentencePiece: it prepends a dummy-prefix '▁' to every encoded text, so " telephone" alone
becomes '▁' '▁te' ... (an extra space token) instead of the '▁te' ... it is inside the sentence.
Encoding the whole string puts the continuation's leading space where it belongs, into its first
piece. All eight tasks' continuations start with a space, which SentencePiece never merges across,
so `ctx` is exactly a prefix of `whole` (checked on all 64,255 requests, 4096-piece tokenizer).

Document start: our corpus has no BOS; documents are joined by EOS, so the model has learned
"a new document begins after EOS". Every context is therefore prefixed with EOS (as lm-eval feeds
its prefix token, and Llama's tokenizer a BOS), which also gives the first context token a
prediction position and lets an empty context work.

Truncation: the model sees at most `max_len` tokens. As in lm-eval, the input is the last
max_len + 1 tokens of context + continuation minus the final one, i.e. the context is cut on the
left and the continuation is scored in full. A continuation longer than max_len (a few PIQA answers
exceed 256 tokens of our 4096-piece tokenizer) keeps its last max_len tokens (lm-eval's slicing
breaks there); pass a larger max_len to score it whole.
"""

from collections.abc import Sequence

import numpy as np


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
  """[(context, continuation)] -> [(context ids with EOS first, continuation ids)]."""
  moved = []
  for context, continuation in pairs:
    spaces = len(context) - len(context.rstrip())
    if spaces:
      context, continuation = context[:-spaces], context[-spaces:] + continuation
    moved.append((context, context + continuation))
  # Each distinct string is encoded once: the choices of a question share their context.
  texts = sorted({text for pair in moved for text in pair})
  ids = dict(zip(texts, tokenizer.encode_batch(texts)))
  encoded = []
  for context, whole in moved:
    context_ids = ids[context]
    encoded.append(([tokenizer.eos_id] + context_ids, ids[whole][len(context_ids):]))
  return encoded


def request_window(context_ids: Sequence[int], continuation_ids: Sequence[int],
                   max_len: int) -> tuple[np.ndarray, np.ndarray, int]:
  """(inputs, targets, n): the model reads `inputs` (<= max_len tokens) and the request's score is
  the log-probability of the last n = min(len(continuation_ids), max_len) entries of `targets`."""
  tokens = np.asarray(list(context_ids) + list(continuation_ids), np.int32)[-(max_len + 1):]
  return tokens[:-1], tokens[1:], min(len(continuation_ids), max_len)


def audit_questions(tokenizer, questions) -> dict:
  """How faithfully `tokenizer` encodes the questions' requests: {'requests', 'requests_with_unk',
  'tied_questions'}; a tied question has two choices whose texts differ but whose token ids are
  equal, so they score alike and the first always wins."""
  pairs = [(context, continuation) for q in questions
           for context, continuation in zip(q.contexts, q.continuations)]
  encoded = iter(encode_pairs(tokenizer, pairs))
  with_unk, tied = 0, 0
  unk = tokenizer.unk_id
  for question in questions:
    choices = {}
    for text in zip(question.contexts, question.continuations):
      context_ids, continuation_ids = next(encoded)
      with_unk += unk >= 0 and (unk in context_ids or unk in continuation_ids)
      choices.setdefault((tuple(context_ids), tuple(continuation_ids)), set()).add(text)
    tied += any(len(texts) > 1 for texts in choices.values())
  return dict(requests=len(pairs), requests_with_unk=with_unk, tied_questions=tied)
