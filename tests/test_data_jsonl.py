"""MobileLLM's pre-tokenized format: jsonl lines {"token_ids": [...]} (no tokenizer needed)."""

import json

import numpy as np
import pytest

from mobilellm_jax.configs import get_config
from mobilellm_jax.data import DataError, make_eval_iterator, make_train_iterator


def _write(path, lines):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps({"token_ids": ids}) + "\n" for ids in lines))


def _lines(seed, count, vocab=256):
  rng = np.random.default_rng(seed)
  return [rng.integers(3, vocab, size=int(rng.integers(20, 90))).tolist() for _ in range(count)]


@pytest.fixture
def config(tmp_path):
  config = get_config("smoke")
  config.train.batch_size = 4  # these tests count rows in batches of 4
  config.data.data_dir = str(tmp_path / "cache")
  config.data.dataset = f"jsonl:{tmp_path / 'mobilellm'}"
  return config


def test_jsonl_folder_with_splits(config, tmp_path):
  root = tmp_path / "mobilellm"
  train = _lines(0, 40)
  _write(root / "train" / "1" / "dclm:0.5" / "data.jsonl", train[:25])  # MobileLLM's layout.
  _write(root / "train" / "2" / "dclm:0.5" / "data.jsonl", train[25:])
  validation = _lines(1, 10)
  _write(root / "validation.jsonl", validation)

  stream = np.concatenate([np.array(ids) for ids in validation])  # Lines joined as they are.
  batches = list(make_eval_iterator(config))
  assert len(batches) == (len(stream) - 1) // 32 // 4
  for b, batch in enumerate(batches):
    for r in range(4):
      start = (4 * b + r) * 32
      np.testing.assert_array_equal(batch["inputs"][r], stream[start:start + 32])
      np.testing.assert_array_equal(batch["targets"][r], stream[start + 1:start + 33])

  train_stream = np.concatenate([np.array(ids) for ids in train])
  windows = {train_stream[i * 32:i * 32 + 33].tobytes()
             for i in range((len(train_stream) - 1) // 32)}
  iterator = make_train_iterator(config)
  for batch in [next(iterator) for _ in range(5)]:
    assert batch["inputs"].shape == (4, 32)
    for r in range(4):
      row = np.concatenate([batch["inputs"][r], batch["targets"][r, -1:]])
      row = row.astype(train_stream.dtype)
      assert row.tobytes() in windows

  with pytest.raises(DataError, match="no 'test' split"):
    make_eval_iterator(config, "test")


def test_single_jsonl_file_is_the_train_split(config, tmp_path):
  _write(tmp_path / "one.jsonl", _lines(2, 30))
  config.data.dataset = f"jsonl:{tmp_path / 'one.jsonl'}"
  assert next(make_train_iterator(config))["inputs"].shape == (4, 32)
  with pytest.raises(DataError, match="one file"):
    make_eval_iterator(config)


def test_jsonl_ids_outside_the_vocab_are_rejected(config, tmp_path):
  _write(tmp_path / "mobilellm" / "train.jsonl", _lines(3, 30, vocab=32000))
  with pytest.raises(DataError, match="model.vocab_size=512"):
    make_train_iterator(config)


def test_jsonl_errors_name_the_line_and_the_empty_split(config, tmp_path):
  root = tmp_path / "mobilellm"
  _write(root / "train.jsonl", _lines(4, 30))
  (root / "validation.jsonl").write_text("\n")
  with pytest.raises(DataError, match="split 'validation'.* is empty"):
    make_eval_iterator(config)
  (root / "validation.jsonl").write_text('{"text": "not tokenized"}\n')
  with pytest.raises(DataError, match="validation.jsonl:1: expected a JSON object with 'token_i"):
    make_eval_iterator(config)
  config.data.dataset = f"jsonl:{tmp_path / 'missing'}"
  with pytest.raises(DataError, match="does not exist"):
    make_train_iterator(config)
