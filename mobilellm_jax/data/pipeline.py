"""grain input pipelines: packed sequences of seq_len+1 tokens -> {'inputs', 'targets'} batches.

Token streams (embedded corpus, jsonl) are cut into fixed chunks; chunk i is tokens
[i*L, i*L + L + 1), so consecutive chunks overlap by one token and every token is a target once.
Training shuffles chunk indices with the run's seed (a new order each epoch), groups them into
global batches, and process p reads only rows [p*B_local, (p+1)*B_local) of each global batch:
the data order does not depend on the number of hosts. The iterator state is one index.

TFDS catalog datasets stream instead: documents are shuffled, sharded by process, tokenized on the
fly with EOS appended, and packed by grain's ConcatThenSplit (checkpointable as well).
"""

import grain
import numpy as np
from absl import flags

from mobilellm_jax.data import builder, paths, readers
from mobilellm_jax.data.errors import DataError
from mobilellm_jax.data.tokenizer import Tokenizer, load_tokenizer


class ChunkReader:
  """Reads rows of chunks from a memory-mapped token file; picklable (reopens in workers)."""

  def __init__(self, stream: readers.TokenStream, seq_len: int):
    self.path, self.seq_len = stream.path, seq_len
    self.num_chunks = max(0, (stream.num_tokens - 1) // seq_len)
    self._tokens = None

  def rows(self, chunk_ids) -> np.ndarray:
    if self._tokens is None:
      self._tokens = np.load(self.path, mmap_mode="r")
    length = self.seq_len
    return np.stack([self._tokens[i * length:i * length + length + 1] for i in chunk_ids]
                    ).astype(np.int32)

  def __getstate__(self):
    return {**self.__dict__, "_tokens": None}


class _ProcessRows:
  """Global batch of chunk ids -> this process's [B_local, seq_len+1] tokens."""

  def __init__(self, reader: ChunkReader, process_index: int, local_batch: int):
    self.reader, self.start, self.local_batch = reader, process_index * local_batch, local_batch

  def __call__(self, chunk_ids: np.ndarray) -> np.ndarray:
    return self.reader.rows(chunk_ids[self.start:self.start + self.local_batch])


def split_inputs_targets(tokens_BxL1: np.ndarray) -> dict:
  """[B, L+1] -> inputs [B, L] and targets [B, L] (targets = inputs shifted left by one)."""
  return {"inputs": tokens_BxL1[:, :-1], "targets": tokens_BxL1[:, 1:]}


class _Tokenize:
  def __init__(self, tokenizer: Tokenizer):
    self.tokenizer = tokenizer

  def __call__(self, text: str) -> dict:
    return {"tokens": np.asarray(self.tokenizer.encode(text) + [self.tokenizer.eos_id], np.int32)}


def _local_batch(batch_size: int, process_index: int, process_count: int) -> int:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise DataError(f"process_index={process_index} must be in [0, process_count={process_count})")
  if batch_size % process_count:
    raise DataError(f"batch_size={batch_size} (train.batch_size) must be divisible by the process "
                    f"count ({process_count}): each host reads batch_size // process_count rows")
  return batch_size // process_count


def _open(config, split: str):
  """(TokenStream | TextRecords, tokenizer or None) for one split of the configured dataset.
  The dataset is checked before the tokenizer so a missing dataset is what gets reported."""
  data = config.data
  root = paths.data_dir(config)
  if data.dataset.startswith(readers.JSONL_PREFIX):
    return readers.jsonl_stream(data.dataset, split, data.train_split, root,
                                config.model.vocab_size), None
  if data.dataset == paths.CORPUS_NAME:
    builder.open_corpus_split(root, split)
    tokenizer = load_tokenizer(config)
    return readers.corpus_stream(root, split, tokenizer), tokenizer
  records = readers.tfds_records(data.dataset, split, root, data.text_feature)
  return records, load_tokenizer(config)


def _chunk_reader(stream: readers.TokenStream, seq_len: int, batch_size: int) -> ChunkReader:
  reader = ChunkReader(stream, seq_len)
  if reader.num_chunks < batch_size:
    raise DataError(f"{stream.description} has {stream.num_tokens} tokens = {reader.num_chunks} "
                    f"sequences of {seq_len}+1, fewer than one batch of {batch_size}: use a bigger "
                    "split or a smaller train.batch_size / data.seq_len")
  return reader


def _packed(docs: grain.MapDataset, tokenizer: Tokenizer, seq_len: int) -> grain.IterDataset:
  """Documents (texts) -> tokenized with EOS -> packed rows of seq_len+1 (no padding inside)."""
  tokens = docs.map(_Tokenize(tokenizer)).to_iter_dataset()
  packed = grain.experimental.ConcatThenSplitIterDataset(
      tokens, length_struct={"tokens": seq_len + 1}, split_full_length_features=True)
  return packed.filter(_is_full).map(_tokens_of)


def _is_full(row: dict) -> bool:
  """Only a dataset's last packed row can end in padding; it is dropped, not trained on."""
  return bool(row["tokens_segment_ids"][-1] != 0)


def _tokens_of(row: dict) -> np.ndarray:
  return row["tokens"]


def _finish(dataset, config) -> grain.DatasetIterator:
  dataset = dataset.map(split_inputs_targets)
  if isinstance(dataset, grain.MapDataset):
    dataset = dataset.to_iter_dataset()
  if config.data.num_workers > 0:
    if not flags.FLAGS.is_parsed():  # grain workers read absl flags; outside absl.app: defaults.
      flags.FLAGS.mark_as_parsed()
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.data.num_workers))
  return iter(dataset)


def make_train_iterator(config, *, process_index: int = 0,
                        process_count: int = 1) -> grain.DatasetIterator:
  """Infinite {'inputs', 'targets'} int32 [train.batch_size // process_count, data.seq_len]
  batches, reshuffled each epoch with train.seed; get_state()/set_state() restore it exactly."""
  batch_size, seq_len, seed = config.train.batch_size, config.data.seq_len, config.train.seed
  local_batch = _local_batch(batch_size, process_index, process_count)
  opened, tokenizer = _open(config, config.data.train_split)
  if isinstance(opened, readers.TokenStream):
    reader = _chunk_reader(opened, seq_len, batch_size)
    chunk_ids = grain.MapDataset.range(reader.num_chunks).shuffle(seed=seed).repeat()
    rows = chunk_ids.batch(batch_size).map(_ProcessRows(reader, process_index, local_batch))
    return _finish(rows, config)
  docs = grain.MapDataset.source(opened).shuffle(seed=seed).repeat()[process_index::process_count]
  rows = _packed(docs, tokenizer, seq_len).batch(local_batch, drop_remainder=True)
  return _finish(rows, config)


def check_eval_split(config) -> None:
  """Raises DataError now, not after the training it would end, when data.eval_split cannot
  fill one eval batch (token streams; text records are only counted as they are read)."""
  opened, _ = _open(config, config.data.eval_split)
  if isinstance(opened, readers.TokenStream):
    _chunk_reader(opened, config.data.seq_len, config.train.batch_size)


def make_eval_iterator(config, split: str | None = None, *, process_index: int = 0,
                       process_count: int = 1, max_batches: int | None = None,
                       batch_size: int | None = None) -> grain.DatasetIterator:
  """Finite, deterministic batches of `split` (default data.eval_split) in order, no shuffling;
  every process gets the same number of batches (token streams). batch_size defaults to
  train.batch_size (global); max_batches caps the count."""
  split = split or config.data.eval_split
  batch_size = batch_size or config.train.batch_size
  seq_len = config.data.seq_len
  local_batch = _local_batch(batch_size, process_index, process_count)
  opened, tokenizer = _open(config, split)
  if isinstance(opened, readers.TokenStream):
    reader = _chunk_reader(opened, seq_len, batch_size)
    rows = (grain.MapDataset.range(reader.num_chunks).batch(batch_size, drop_remainder=True)
            .map(_ProcessRows(reader, process_index, local_batch)))
    if max_batches is not None:
      rows = rows[:max_batches]
    return _finish(rows, config)
  docs = grain.MapDataset.source(opened)[process_index::process_count]
  rows = _packed(docs, tokenizer, seq_len).batch(local_batch, drop_remainder=True)
  if max_batches is not None:
    rows = grain.experimental.LimitIterDataset(rows, count=max_batches)
  return _finish(rows, config)
