"""A SentencePiece BPE model as Hugging Face tokenizer files that encode to the same ids.

transformers 5's `LlamaTokenizer` rebuilds its own pipeline from the vocabulary and drops
SentencePiece's dummy prefix before a leading space or a leading newline (' a' and '\\na' encode
differently from SentencePiece). So the export writes the whole pipeline in `tokenizer.json`
(loaded as is by `PreTrainedTokenizerFast`, the class its config names): the dummy prefix and
space replacement as a normalizer over the whole text, BPE with byte fallback, no BOS added.
Single-character user-defined pieces (our '\\n') stay ordinary pieces so the prefix is added
once, at the start, as SentencePiece does.
"""

import json
import shutil
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

SPACE = "\u2581"  # SentencePiece's visible space


def _model_proto(spm_path) -> "sentencepiece_model_pb2.ModelProto":
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(Path(spm_path).read_bytes())
  return proto


def check_supported(proto) -> None:
  """Raises ValueError for a SentencePiece model this conversion does not reproduce."""
  trainer, normalizer = proto.trainer_spec, proto.normalizer_spec
  problems = []
  if trainer.model_type != sentencepiece_model_pb2.TrainerSpec.BPE:
    problems.append("its model_type is not BPE")
  if normalizer.name not in ("identity", "") or normalizer.precompiled_charsmap:
    problems.append(f"it normalises text ({normalizer.name!r})")
  if normalizer.remove_extra_whitespaces:
    problems.append("it removes extra whitespace")
  if problems:
    raise ValueError("cannot express this SentencePiece model as a Hugging Face tokenizer: "
                     + "; ".join(problems))


def _merges(proto) -> list[tuple[str, str]]:
  """BPE merges ranked as SentencePiece applies them: a pair whose merged piece scores higher
  merges first (pieces of a BPE model are stored in merge order)."""
  normal = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
  vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
  ranked = []
  for rank, piece in enumerate(proto.pieces):
    if piece.type != normal or len(piece.piece) < 2:
      continue
    text = piece.piece
    for cut in range(1, len(text)):
      left, right = text[:cut], text[cut:]
      if left in vocab and right in vocab:
        ranked.append((-piece.score, rank, vocab[left], vocab[right], left, right))
  return [(left, right) for *_, left, right in sorted(ranked)]


def tokenizer_json(spm_path) -> dict:
  """The `tokenizer.json` of a SentencePiece BPE model (via the `tokenizers` library)."""
  from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers  # pylint: disable=import-outside-toplevel
  proto = _model_proto(spm_path)
  check_supported(proto)
  kinds = sentencepiece_model_pb2.ModelProto.SentencePiece
  vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
  unk = next((p.piece for p in proto.pieces if p.type == kinds.UNKNOWN), None)
  tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=_merges(proto), unk_token=unk, fuse_unk=True,
                                   byte_fallback=proto.trainer_spec.byte_fallback))
  prefix = proto.normalizer_spec.add_dummy_prefix
  tokenizer.normalizer = normalizers.Sequence(
      ([normalizers.Prepend(SPACE)] if prefix else []) + [normalizers.Replace(" ", SPACE)])
  steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
  tokenizer.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if prefix else []))
  special = [p.piece for p in proto.pieces if p.type in (kinds.CONTROL, kinds.UNKNOWN)]
  tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in special])
  user = [p.piece for p in proto.pieces if p.type == kinds.USER_DEFINED and len(p.piece) > 1]
  tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])
  return json.loads(tokenizer.to_str())


def write_tokenizer(spm_path, out_dir, max_length: int) -> None:
  """tokenizer.json, tokenizer_config.json, special_tokens_map.json and the .model itself (for
  runtimes that read SentencePiece) into out_dir. No BOS or EOS is added on encoding: our runs
  train without BOS, and EOS marks the end of a document."""
  out_dir = Path(out_dir)
  sp = spm.SentencePieceProcessor(model_file=str(spm_path))
  piece = lambda i: sp.id_to_piece(i) if i >= 0 else None
  specials = dict(unk_token=piece(sp.unk_id()), bos_token=piece(sp.bos_id()),
                  eos_token=piece(sp.eos_id()), pad_token=piece(sp.pad_id()))
  specials = {k: v for k, v in specials.items() if v is not None}
  (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json(spm_path), ensure_ascii=False))
  config = dict(tokenizer_class="PreTrainedTokenizerFast", add_bos_token=False,
                add_eos_token=False, clean_up_tokenization_spaces=False,
                model_max_length=max_length, **specials)
  (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
  (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
  shutil.copyfile(spm_path, out_dir / "tokenizer.model")


def check_same_ids(spm_path, out_dir, texts) -> None:
  """Raises ValueError when the written tokenizer.json encodes one of `texts` differently from
  SentencePiece."""
  from tokenizers import Tokenizer  # pylint: disable=import-outside-toplevel
  sp = spm.SentencePieceProcessor(model_file=str(spm_path))
  ours = Tokenizer.from_file(str(Path(out_dir) / "tokenizer.json"))
  for text in texts:
    expected, got = sp.encode(text), ours.encode(text, add_special_tokens=False).ids
    if expected != got:
      raise ValueError(f"the exported tokenizer encodes {text[:60]!r} as {got[:20]}, "
                       f"SentencePiece as {expected[:20]}")
