"""The embedded corpus and the eight zero-shot tasks as prepared for real runs (not a fixture):
the tokenizer every published number depends on loses no character.

Needs the prepared data in the default data dir, which the README's test command (and .ci/run)
builds first: `python -m mobilellm_jax.data.prepare && python -m mobilellm_jax.evaluation.tasks`.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from mobilellm_jax.data import builder, paths, readers
from mobilellm_jax.data.corpus import SPLITS
from mobilellm_jax.data.tokenizer import Tokenizer
from mobilellm_jax.evaluation import TASKS, load_task
from mobilellm_jax.evaluation.encoding import audit_questions

PREPARE = "python -m mobilellm_jax.data.prepare && python -m mobilellm_jax.evaluation.tasks"
VOCAB_SIZE = 4096  # the cpu scale's tokenizer


@pytest.fixture(scope="module")
def prepared():
  root = paths.resolve_data_dir(None)
  model = paths.corpus_tokenizer_path(root, VOCAB_SIZE)
  record = model.with_suffix(".json")
  if not record.exists():
    pytest.fail(f"the corpus and its {VOCAB_SIZE}-piece tokenizer are not prepared in {root}; "
                f"run `{PREPARE}` first (the README's test command does)")
  return root, Tokenizer(model), json.loads(record.read_text())


def test_no_split_of_the_corpus_has_an_unk_token(prepared):
  _, tokenizer, record = prepared
  assert len(tokenizer.byte_piece_ids) == 256
  for split in SPLITS:
    tokens = np.load(record["token_files"][split], mmap_mode="r")
    assert tokens.size > 50_000
    assert int((tokens == tokenizer.unk_id).sum()) == 0, split
    assert record["splits"][split]["unk_tokens"] == 0


def test_validation_documents_decode_back_to_their_text(prepared):
  root, tokenizer, _ = prepared
  validation = builder.open_corpus_split(root, "validation")
  texts = [readers.as_str(validation[i]["text"]) for i in range(len(validation))]
  assert len(texts) > 20
  for text, ids in zip(texts, tokenizer.encode_batch(texts)):
    assert tokenizer.decode(ids) == text


@pytest.mark.slow
def test_every_zero_shot_request_encodes_without_unk_and_no_choices_tie(prepared):
  root, tokenizer, _ = prepared
  totals = {"requests": 0, "requests_with_unk": 0, "tied_questions": 0}
  for task in TASKS:
    try:
      questions = load_task(task, str(root))
    except Exception as error:  # pylint: disable=broad-except
      pytest.fail(f"{error}; run `{PREPARE}` first")
    for key, value in audit_questions(tokenizer, questions).items():
      totals[key] += value
  assert totals == {"requests": 64_255, "requests_with_unk": 0, "tied_questions": 0}
