"""Bad input fails early with a DataError that says what to run or change."""

import pytest
import tensorflow_datasets as tfds

from mobilellm_jax.configs import get_config
from mobilellm_jax.data import DataError, make_eval_iterator, make_train_iterator


@pytest.fixture
def config(data_dir):
  config = get_config("smoke")
  config.train.batch_size = 4  # these tests count rows in batches of 4
  config.data.data_dir = str(data_dir)
  return config


def test_data_error_is_a_value_error():
  assert issubclass(DataError, ValueError)


def test_missing_corpus_says_to_run_prepare(config, tmp_path):
  config.data.data_dir = str(tmp_path / "empty")
  with pytest.raises(DataError, match=r"no mobilellm_corpus dataset .* run `python -m "
                     r"mobilellm_jax.data.prepare --data_dir"):
    make_train_iterator(config)


def test_unknown_split_lists_the_splits(config):
  config.data.eval_split = "dev"
  with pytest.raises(DataError, match=r"no split 'dev'.*\['test', 'train', 'validation'\]"):
    make_eval_iterator(config)


def test_unknown_tfds_name(config):
  config.data.dataset = "no_such_dataset_xyz"
  with pytest.raises(DataError, match="unknown dataset .*'no_such_dataset_xyz'.*jsonl:<path>"):
    make_train_iterator(config)


def test_unprepared_catalog_dataset_says_how_to_prepare_it(config, tmp_path):
  config.data.dataset = "lm1b"
  config.data.data_dir = str(tmp_path)
  with pytest.raises(DataError, match=r"Prepare it once in ArrayRecord.*tfds.builder\('lm1b'"):
    make_train_iterator(config)


def test_empty_tfds_split(config):
  config.data.dataset = "lm1b"
  with tfds.testing.mock_data(num_examples=0, policy=tfds.testing.MockPolicy.USE_CODE):
    with pytest.raises(DataError, match="TFDS 'lm1b' split 'train' is empty"):
      make_train_iterator(config)


def test_missing_text_feature(config):
  config.data.dataset = "lm1b"
  config.data.text_feature = "body"
  with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
    with pytest.raises(DataError, match="no feature 'body': set data.text_feature"):
      make_train_iterator(config)


def test_tokenizer_vocab_must_match_the_model(config):
  config.model.vocab_size = 4096
  with pytest.raises(DataError, match="no 4096-piece tokenizer .* --vocab_size 4096"):
    make_train_iterator(config)
  config.data.tokenizer_path = str(config.data.data_dir) + "/mobilellm_corpus/tokenizer_v512_r2.model"
  with pytest.raises(DataError, match="512 pieces but model.vocab_size=4096"):
    make_eval_iterator(config)


def test_batch_must_divide_over_processes_and_fit_the_split(config):
  with pytest.raises(DataError, match=r"batch_size=4 .* must be divisible by the process count \(3\)"):
    make_train_iterator(config, process_index=0, process_count=3)
  with pytest.raises(DataError, match="process_index=2 must be in"):
    make_train_iterator(config, process_index=2, process_count=2)
  config.data.seq_len = 128
  config.train.batch_size = 8
  with pytest.raises(DataError, match="fewer than one batch of 8"):
    make_eval_iterator(config)
