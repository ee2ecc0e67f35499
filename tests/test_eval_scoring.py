"""Log-likelihood scoring: lm-eval tokenization, truncation, padding invariance, and parity of
every per-choice log-likelihood and accuracy with Hugging Face LlamaForCausalLM."""

import functools
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from mobilellm_jax.configs import get_config
from mobilellm_jax.data import load_tokenizer
from mobilellm_jax.data.testing import build_tiny_corpus
from mobilellm_jax.evaluation import (TASKS, Question, evaluate_zeroshot, load_task,
                                      loglikelihoods, prepare_tasks, question_metrics,
                                      zeroshot_from_config)
from mobilellm_jax.evaluation.encoding import encode_pairs, request_window
from mobilellm_jax.evaluation.scoring import bucket_lengths
from mobilellm_jax.evaluation.testing import write_request_wheel
from mobilellm_jax.hf import hf_config_dict, to_hf_state_dict
from mobilellm_jax.model import build_model

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
MAX_LEN = 64  # Short enough that BoolQ/PIQA contexts get truncated with the 512-piece tokenizer.
BATCH = 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("scoring")
  build_tiny_corpus(root)
  prepare_tasks(str(root), wheel_path=str(write_request_wheel(FIXTURES, root / "f.whl")))
  config = get_config("smoke")
  config.data.data_dir = str(root)
  config.model.init_std = 0.1  # Spread-out predictions, so choices score clearly apart.
  return config, load_tokenizer(config), build_model(config.model, seed=7), str(root)


def _fixture_requests(tokenizer, root):
  questions = [q for t in TASKS for q in load_task(t, root)]
  pairs = [p for q in questions for p in zip(q.contexts, q.continuations)]
  return questions, pairs, encode_pairs(tokenizer, pairs)


def test_tokenization_splits_the_whole_string_as_lm_eval(setup):
  _, tokenizer, _, root = setup
  _, pairs, encoded = _fixture_requests(tokenizer, root)
  for (context, continuation), (context_ids, continuation_ids) in zip(pairs, encoded):
    assert context_ids[0] == tokenizer.eos_id  # document start
    assert context_ids[1:] == tokenizer.encode(context)
    assert context_ids[1:] + continuation_ids == tokenizer.encode(context + continuation)
  # Encoding the continuation alone would add SentencePiece's dummy-prefix piece.
  (_, continuation_ids), = encode_pairs(tokenizer, [("He said", " the end")])
  assert tokenizer.encode(" the end") != continuation_ids
  assert tokenizer.decode(continuation_ids) == "the end"  # decode drops a leading space


def test_trailing_context_space_moves_to_the_continuation(setup):
  _, tokenizer, _, _ = setup
  (ctx_a, cont_a), = encode_pairs(tokenizer, [("Answer: ", "the sea")])
  (ctx_b, cont_b), = encode_pairs(tokenizer, [("Answer:", " the sea")])
  assert (ctx_a, cont_a) == (ctx_b, cont_b)


def test_request_window_truncates_the_context_on_the_left():
  context, continuation = list(range(100)), [200, 201, 202]
  inputs, targets, scored = request_window(context, continuation, 16)
  assert len(inputs) == len(targets) == 16 and scored == 3
  assert list(targets[-3:]) == continuation and list(inputs[-2:]) == [200, 201]
  assert list(inputs[:2]) == [86, 87]  # the last 17 of 103 tokens are kept; the oldest go
  _, targets, scored = request_window([1], list(range(40)), 16)
  assert scored == 16 and list(targets) == list(range(24, 40))


def test_bucket_lengths():
  assert bucket_lengths(64) == [32, 40, 48, 56, 64]
  assert bucket_lengths(256)[-3:] == [192, 224, 256] and bucket_lengths(20) == [20]


@functools.partial(jax.jit, static_argnums=0)
def _logits(graphdef, state, tokens_BxL):
  return nnx.merge(graphdef, state)(tokens_BxL)


def _reference(model, requests, max_len):
  """Each request alone and unpadded through the plain model: sum of its scored log-probs."""
  graphdef, state = nnx.split(model)
  out = []
  for context, continuation in requests:
    inputs, targets, scored = request_window(context, continuation, max_len)
    logits = np.asarray(_logits(graphdef, state, inputs[None]), np.float64)[0]
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    out.append(logp[np.arange(len(targets)), targets][len(targets) - scored:].sum())
  return np.asarray(out)


@pytest.mark.slow
def test_padding_and_batching_do_not_change_scores(setup):
  _, tokenizer, model, root = setup
  _, _, encoded = _fixture_requests(tokenizer, root)
  some = encoded[::12]  # ~20 requests of all lengths and tasks
  together = loglikelihoods(model, some, max_len=MAX_LEN, batch_size=BATCH)
  alone = np.asarray([loglikelihoods(model, [r], max_len=MAX_LEN, batch_size=BATCH)[0]
                      for r in some[:6]])
  np.testing.assert_allclose(alone, together[:6], rtol=0, atol=1e-5)
  # Unpadded, one compile per length: a few here; the HF test covers every request unpadded.
  np.testing.assert_allclose(together[:4], _reference(model, some[:4], MAX_LEN), atol=2e-5)


def test_requests_with_identical_inputs_share_a_row_but_keep_their_own_final_token(setup):
  _, tokenizer, model, _ = setup
  requests = encode_pairs(tokenizer, [("Is the sea deep?\nAnswer:", " the"),
                                      ("Is the sea deep?\nAnswer:", " of")])
  assert len(requests[0][1]) == len(requests[1][1]) == 1  # one token each: identical inputs
  scores = loglikelihoods(model, requests, max_len=MAX_LEN, batch_size=BATCH)
  np.testing.assert_allclose(scores, _reference(model, requests, MAX_LEN), atol=2e-5)
  assert abs(scores[0] - scores[1]) > 1e-3


def test_metrics_rank_raw_and_per_character():
  questions = [Question(0, ("q",) * 2, (" a", " bbbbbbbb"), 1),
               Question(1, ("q",) * 3, (" a", " b", " c"), 0)]
  scores = [-2.0, -3.0, -1.0, -1.0, -5.0]  # q0: raw picks 0, per char picks 1; q1: tie -> first
  metrics = question_metrics(questions, scores)
  assert metrics == {"acc": 0.5, "acc_norm": 1.0, "chance": pytest.approx((1 / 2 + 1 / 3) / 2),
                     "num_questions": 2}


def _hf_scores(model, requests, max_len):
  hf_config = transformers.LlamaConfig(**hf_config_dict(model.args), attn_implementation="eager")
  hf = transformers.LlamaForCausalLM(hf_config).eval()
  state = {k: torch.from_numpy(np.array(v)) for k, v in to_hf_state_dict(model).items()}
  hf.load_state_dict(state, strict=False)
  hf = hf.double()  # The reference in float64: what remains is our float32 error.
  out, threads = [], torch.get_num_threads()
  torch.set_num_threads(1)  # Tiny matmuls: threads only add spin-waiting on a busy 2-core box.
  with torch.no_grad():
    for context, continuation in requests:
      tokens = (context + continuation)[-(max_len + 1):]
      scored = min(len(continuation), max_len)
      logp = torch.log_softmax(hf(torch.tensor([tokens[:-1]])).logits[0], -1)
      targets = torch.tensor(tokens[1:])
      out.append(logp[torch.arange(len(targets)), targets][-scored:].sum().item())
  torch.set_num_threads(threads)
  return np.asarray(out)


@pytest.mark.slow
def test_loglikelihoods_and_accuracies_match_hugging_face(setup):
  _, tokenizer, model, root = setup
  questions, _, encoded = _fixture_requests(tokenizer, root)
  assert len(encoded) > 200
  ours = loglikelihoods(model, encoded, max_len=MAX_LEN, batch_size=BATCH)
  theirs = _hf_scores(model, encoded, MAX_LEN)
  assert np.abs(ours - theirs).max() < 1e-5, np.abs(ours - theirs).max()
  assert np.ptp(theirs) > 10  # scores spread out: the comparison is not trivially tight

  results = evaluate_zeroshot(model, tokenizer, TASKS, max_len=MAX_LEN, batch_size=BATCH,
                              data_dir=root)
  start = 0
  for task in TASKS:  # _fixture_requests lists the tasks' questions in this order
    task_questions = load_task(task, root)
    count = sum(q.num_choices for q in task_questions)
    assert results[task] == question_metrics(task_questions, theirs[start:start + count])
    start += count
  assert start == len(theirs) == sum(q.num_choices for q in questions)
  assert results["avg_acc"] == pytest.approx(np.mean([results[t]["acc"] for t in TASKS]))
  assert results["avg_chance"] == pytest.approx(np.mean([results[t]["chance"] for t in TASKS]))


def test_evaluate_zeroshot_takes_a_split_model_and_max_examples(setup):
  _, tokenizer, model, root = setup
  results = evaluate_zeroshot(nnx.split(model), tokenizer, ["piqa", "openbookqa"],
                              max_examples=2, batch_size=BATCH, max_len=MAX_LEN, data_dir=root)
  assert results["piqa"]["num_questions"] == results["obqa"]["num_questions"] == 2
  assert results["piqa"]["chance"] == 0.5 and results["avg_chance"] == 0.375
  with pytest.raises(ValueError, match="max_len=512 must be in"):
    evaluate_zeroshot(model, tokenizer, ["piqa"], max_len=512, data_dir=root)


def test_zeroshot_from_config_reads_the_eval_section(setup):
  config, tokenizer, model, _ = setup
  config = config.copy_and_resolve_references()
  config.eval.tasks, config.eval.max_examples, config.eval.batch_size = "winogrande, piqa", 3, 4
  results = zeroshot_from_config(model, config)  # tokenizer from config.data, windows of seq_len
  assert set(results) == {"winogrande", "piqa", "avg_acc", "avg_acc_norm", "avg_chance"}
  assert results["piqa"]["num_questions"] == 3
  direct = evaluate_zeroshot(model, tokenizer, ["winogrande", "piqa"], max_examples=3,
                             batch_size=4, max_len=config.data.seq_len,
                             data_dir=config.data.data_dir)
  assert results == direct
  config.eval.tasks = ""
  assert zeroshot_from_config(model, config) == {}
