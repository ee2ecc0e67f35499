"""How many UTF-8 bytes of text each scored token stands for: the denominator of bits-per-byte.

Exact method (a text, or the embedded corpus whose documents we can re-read): SentencePiece
reports for every piece the byte span of the original text it covers (`return_type='proto'`:
begin/end), so the bytes are those of the text before normalization, an unknown character counts
its real size, and the dummy-prefix '▁' SentencePiece adds at the start of a text counts 0.
EOS counts 0 bytes (it is a boundary, not text; its log-loss is still counted).

Decoded method (token ids only, e.g. a TFDS catalog dataset or pre-tokenized jsonl): each token
counts the UTF-8 bytes of its piece with '▁' read as a space, minus the dummy-prefix space on a
document's first token (the one after EOS); control pieces count 0. An <unk> piece has lost its
character and counts 1 byte (a lower bound; on the embedded corpus' test split with the 4096-piece
tokenizer the count is 137 bytes in 352,777 short, 0.04%). A byte-fallback tokenizer (LLaMA's)
has no <unk>.
"""

import numpy as np
import sentencepiece as spm

from mobilellm_jax.data import builder, paths, readers


def _processor(tokenizer) -> spm.SentencePieceProcessor:
  return spm.SentencePieceProcessor(model_file=tokenizer.path)


def text_token_bytes(tokenizer, text: str) -> tuple[np.ndarray, np.ndarray]:
  """(ids, bytes) of `text`: ids equal tokenizer.encode(text); bytes sum to len(text.encode())."""
  return _spans(_processor(tokenizer), text)


def _spans(sp: spm.SentencePieceProcessor, text: str) -> tuple[np.ndarray, np.ndarray]:
  pieces = sp.encode(text, return_type="proto").pieces
  ids = np.fromiter((p.id for p in pieces), np.int64, len(pieces))
  sizes = np.fromiter((p.end - p.begin for p in pieces), np.int64, len(pieces))
  return ids, sizes


class DecodedBytes:
  """(inputs_BxL, targets_BxL) -> bytes of the targets' decoded text (see the module doc)."""
  exact = False

  def __init__(self, tokenizer):
    sp = _processor(tokenizer)
    size = sp.get_piece_size()
    self.eos_id = tokenizer.eos_id
    self.bytes_V = np.asarray([
        0 if sp.is_control(i) else 1 if sp.is_unknown(i) or sp.is_byte(i)
        else len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8")) for i in range(size)],
        np.int64)
    self.spaced_V = np.asarray([sp.id_to_piece(i).startswith("\u2581") for i in range(size)])

  def __call__(self, inputs_BxL, targets_BxL) -> int:
    targets = np.asarray(targets_BxL)
    document_start = np.asarray(inputs_BxL) == self.eos_id
    return int(self.bytes_V[targets].sum() - (self.spaced_V[targets] & document_start).sum())


class StreamBytes:
  """Exact bytes for batches that read a split's token stream in order (the embedded corpus'
  eval batches: row r of all batches holds targets stream[r*L+1 : r*L+L+1]). If a batch does not
  match the stream, it and the rest are counted with the decoded method and `exact` turns False."""

  def __init__(self, ids_S: np.ndarray, bytes_S: np.ndarray, fallback: DecodedBytes):
    self.ids_S, self.bytes_S, self.fallback = ids_S, bytes_S, fallback
    self.position, self.exact = 1, True  # The stream's first token is never a target.

  def __call__(self, inputs_BxL, targets_BxL) -> int:
    targets_N = np.asarray(targets_BxL).reshape(-1)
    end = self.position + targets_N.size
    if self.exact and np.array_equal(self.ids_S[self.position:end], targets_N):
      self.position = end
      return int(self.bytes_S[end - targets_N.size:end].sum())
    self.exact = False
    return self.fallback(inputs_BxL, targets_BxL)


def corpus_stream_bytes(root, split: str, tokenizer) -> tuple[np.ndarray, np.ndarray]:
  """(ids, bytes) of the embedded corpus split as the pipeline streams it: each document's tokens
  followed by EOS, in record order (data/token_cache.py)."""
  records = builder.open_corpus_split(root, split)
  sp, ids, sizes = _processor(tokenizer), [], []
  for index in range(len(records)):
    doc_ids, doc_bytes = _spans(sp, readers.as_str(records[index]["text"]))
    ids += [doc_ids, [tokenizer.eos_id]]
    sizes += [doc_bytes, [0]]
  return np.concatenate(ids).astype(np.int64), np.concatenate(sizes).astype(np.int64)


def byte_counter(config, split: str, tokenizer):
  """The exact counter for the embedded corpus, else the decoded one."""
  fallback = DecodedBytes(tokenizer)
  if config.data.dataset != paths.CORPUS_NAME:
    return fallback
  return StreamBytes(*corpus_stream_bytes(paths.data_dir(config), split, tokenizer), fallback)
