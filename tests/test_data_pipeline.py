"""Input pipeline on a tiny real corpus: packing, shuffling, exact resume, orbax, sharding, eval."""

import sys

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from mobilellm_jax.configs import get_config
from mobilellm_jax.data import load_tokenizer, make_eval_iterator, make_train_iterator
from mobilellm_jax.data.builder import open_corpus_split
from mobilellm_jax.data.readers import as_str


@pytest.fixture
def config(data_dir):
  config = get_config("smoke")  # vocab 256, seq_len 32
  config.train.batch_size = 4  # these tests count rows in batches of 4
  config.data.data_dir = str(data_dir)
  return config


def _stream(config, split):
  """What the pipeline should see: each document's tokens then EOS, in the split's record order."""
  tokenizer = load_tokenizer(config)
  records = open_corpus_split(config.data.data_dir, split)
  ids = []
  for i in range(len(records)):
    ids += tokenizer.encode(as_str(records[i]["text"])) + [tokenizer.eos_id]
  return np.array(ids), len(records), tokenizer


def _chunks(stream, seq_len):
  count = (len(stream) - 1) // seq_len
  return np.stack([stream[i * seq_len:i * seq_len + seq_len + 1] for i in range(count)])


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _same(batches_a, batches_b):
  return len(batches_a) == len(batches_b) and all(
      np.array_equal(a["inputs"], b["inputs"]) and np.array_equal(a["targets"], b["targets"])
      for a, b in zip(batches_a, batches_b))


def test_eval_batches_are_the_packed_stream_in_order(config):
  stream, num_docs, tokenizer = _stream(config, "validation")
  assert (stream == tokenizer.eos_id).sum() == num_docs  # One EOS per document boundary.
  chunks = _chunks(stream, 32)
  batches = list(make_eval_iterator(config))
  assert len(batches) == len(chunks) // 4 > 0
  for b, batch in enumerate(batches):
    assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
    assert batch["inputs"].shape == batch["targets"].shape == (4, 32)
    np.testing.assert_array_equal(batch["inputs"], chunks[4 * b:4 * b + 4, :-1])
    np.testing.assert_array_equal(batch["targets"], chunks[4 * b:4 * b + 4, 1:])
    np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])


def test_eval_is_finite_deterministic_and_capped(config):
  first, second = list(make_eval_iterator(config)), list(make_eval_iterator(config))
  assert _same(first, second)
  assert _same(list(make_eval_iterator(config, max_batches=2)), first[:2])
  assert len(list(make_eval_iterator(config, "test"))) > 0


def test_train_epoch_covers_every_chunk_once_and_reshuffles(config):
  chunks = _chunks(_stream(config, "train")[0], 32)
  index = {row.tobytes(): i for i, row in enumerate(chunks)}
  per_epoch = len(chunks) // 4
  batches = _take(make_train_iterator(config), 2 * per_epoch)
  rows = [np.concatenate([b["inputs"][r], b["targets"][r, -1:]]) for b in batches for r in range(4)]
  order = [index[row.astype(chunks.dtype).tobytes()] for row in rows]
  first, second = order[:per_epoch * 4], order[len(chunks):len(chunks) + per_epoch * 4]
  assert len(set(first)) == len(first)  # Whole batches inside epoch 1 never repeat a chunk.
  assert sorted(order[:len(chunks)]) == list(range(len(chunks)))  # Epoch 1 is a permutation.
  assert first != sorted(first) and first != second  # Shuffled, and differently next epoch.
  config.train.seed = 1
  other_seed = _take(make_train_iterator(config), 3)
  assert not _same(other_seed, batches[:3])


def test_resume_mid_epoch_and_across_epochs_is_exact(config):
  per_epoch = (_stream(config, "train")[0].size - 1) // 32 // 4
  for steps_before in (7, per_epoch - 2):
    iterator = make_train_iterator(config)
    _take(iterator, steps_before)
    state = iterator.get_state()
    expected = _take(iterator, 5)
    restored = make_train_iterator(config)
    restored.set_state(state)
    assert _same(_take(restored, 5), expected)


def test_iterator_state_saves_and_restores_with_orbax(config, tmp_path):
  iterator = make_train_iterator(config)
  _take(iterator, 11)
  manager = ocp.CheckpointManager(tmp_path / "ckpt")
  manager.save(11, args=ocp.args.Composite(
      params=ocp.args.StandardSave({"w": np.arange(3.0)}),
      data_iter=grain.checkpoint.CheckpointSave(iterator)))
  manager.wait_until_finished()
  expected = _take(iterator, 4)

  fresh = make_train_iterator(config)
  restored = manager.restore(11, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(), data_iter=grain.checkpoint.CheckpointRestore(fresh)))
  assert restored["data_iter"] is fresh
  np.testing.assert_array_equal(restored["params"]["w"], np.arange(3.0))
  assert _same(_take(fresh, 4), expected)
  manager.close()


def test_processes_split_each_global_batch(config):
  single = _take(make_train_iterator(config), 6)
  halves = [_take(make_train_iterator(config, process_index=p, process_count=2), 6) for p in (0, 1)]
  for step, batch in enumerate(single):
    zero, one = halves[0][step]["inputs"], halves[1][step]["inputs"]
    assert zero.shape == one.shape == (2, 32)
    np.testing.assert_array_equal(np.concatenate([zero, one]), batch["inputs"])
    assert not any(np.array_equal(a, b) for a in zero for b in one)
  evals = [list(make_eval_iterator(config, process_index=p, process_count=2)) for p in (0, 1)]
  assert len(evals[0]) == len(evals[1]) == len(list(make_eval_iterator(config)))
  for b, batch in enumerate(make_eval_iterator(config)):
    np.testing.assert_array_equal(
        np.concatenate([evals[0][b]["inputs"], evals[1][b]["inputs"]]), batch["inputs"])


def test_catalog_dataset_through_tfds_mock_data(config):
  """A TFDS catalog name goes through tfds.data_source (mocked: no download, no TensorFlow)."""
  config.data.dataset = "lm1b"
  tokenizer = load_tokenizer(config)
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    iterator = make_train_iterator(config)
    batches = _take(iterator, 3)
    assert batches[0]["inputs"].shape == (4, 32) and batches[0]["inputs"].dtype == np.int32
    np.testing.assert_array_equal(batches[0]["targets"][:, :-1], batches[0]["inputs"][:, 1:])
    assert (np.concatenate([b["inputs"] for b in batches]) == tokenizer.eos_id).any()
    state = iterator.get_state()
    expected = _take(iterator, 4)
    restored = make_train_iterator(config)
    restored.set_state(state)
    assert _same(_take(restored, 4), expected)
    evaluation = list(make_eval_iterator(config))
    assert len(evaluation) > 0 and _same(evaluation, list(make_eval_iterator(config)))
    config.data.dataset = "c4/en"  # Registered only via the text family import (see readers.py).
    assert next(make_train_iterator(config))["inputs"].shape == (4, 32)


def test_tfds_streaming_path_on_a_real_array_record_dataset(config):
  """The catalog path on real ArrayRecord files: our corpus asked for by TFDS name + version."""
  stream_docs, tokenizer = [], load_tokenizer(config)
  records = open_corpus_split(config.data.data_dir, "validation")
  for i in range(len(records)):
    stream_docs += tokenizer.encode(as_str(records[i]["text"])) + [tokenizer.eos_id]
  config.data.dataset = "mobilellm_corpus:1.0.0"
  config.train.batch_size = 2
  rows = np.concatenate([np.concatenate([b["inputs"], b["targets"][:, -1:]], axis=1)
                         for b in make_eval_iterator(config)])
  assert rows.shape[0] == len(stream_docs) // 33 // 2 * 2  # Full rows only, whole batches.
  # Packed rows are consecutive, non-overlapping windows of the EOS-joined documents.
  np.testing.assert_array_equal(rows.reshape(-1), stream_docs[:rows.size])
  assert next(make_train_iterator(config))["inputs"].shape == (2, 32)


@pytest.mark.slow
def test_worker_processes_give_the_same_batches_and_state(config):
  reference = _take(make_train_iterator(config), 6)
  config.data.num_workers = 1
  iterator = make_train_iterator(config)
  head = _take(iterator, 2)
  state = iterator.get_state()
  tail = _take(iterator, 4)
  iterator.close()
  assert _same(head + tail, reference)
  restored = make_train_iterator(config)
  restored.set_state(state)
  assert _same(_take(restored, 4), tail)
  restored.close()
  assert "tensorflow" not in sys.modules
