"""Read back what a W&B offline run recorded, without an account or the network: its
`run-<id>.wandb` transaction log (LevelDB log blocks holding wandb's protobuf Records, the file
`wandb sync` uploads). Tests check runs and dashboards with it; `wandb leet` browses the same."""

import dataclasses
import glob
import json
import os
import struct
import time
import zlib

from wandb.proto import wandb_internal_pb2

_MAGIC = (b":W&B", 0xBEE1, 0)  # ident, magic, version of the file header
_BLOCK, _HEADER = 32768, 7  # a record's header never crosses a block
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: str):
  """The Records of one .wandb file, in order, up to one still being written; a bad header or
  checksum raises ValueError."""
  with open(path, "rb") as f:
    data = f.read()
  if struct.unpack("<4sHB", data[:_HEADER]) != _MAGIC:
    raise ValueError(f"{path} is not a W&B transaction log")
  position, pending = _HEADER, b""
  while position + _HEADER <= len(data):
    left = _BLOCK - position % _BLOCK
    if left < _HEADER:  # zero padding at the end of a block
      position += left
      continue
    checksum, length, kind = struct.unpack("<IHB", data[position:position + _HEADER])
    if position + _HEADER + length > len(data):
      return  # a record still being written
    chunk = data[position + _HEADER:position + _HEADER + length]
    position += _HEADER + length
    if kind == 0 and length == 0:
      continue
    if zlib.crc32(bytes([kind]) + chunk) != checksum:
      raise ValueError(f"{path}: bad checksum at byte {position - length - _HEADER}")
    pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
    if kind in (_FULL, _LAST):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(pending)
      yield record


def _set(target: dict, item) -> None:
  """One update item (key or nested_key, value_json) applied to a dict."""
  keys = list(item.nested_key) or [item.key]
  for key in keys[:-1]:
    target = target.setdefault(key, {})
  target[keys[-1]] = json.loads(item.value_json)


@dataclasses.dataclass
class OfflineRun:
  """What one offline run recorded, merged as W&B would show it."""
  path: str  # the offline-run-* directory
  run_id: str
  group: str
  job_type: str
  tags: list
  config: dict  # top-level keys -> values
  metrics: list  # define_metric calls: dicts of name/glob_name/step_metric/summary
  history: list  # one dict per committed row
  summary: dict
  artifacts: list  # dicts of name, type, files (paths in the artifact)
  files: list  # files saved with the run, relative to its files/ directory
  finished: bool  # the log ends with the run's exit record

  def file(self, relative: str) -> str:
    return os.path.join(self.path, "files", relative)


def read_run(run_dir: str, wait_s: float = 30.0) -> OfflineRun:
  """An offline-run-* directory (the newest one, given the run's parent `wandb` directory).
  W&B's service may still be writing the log when `run.finish()` returns: this waits up to
  `wait_s` for the exit record."""
  if not glob.glob(os.path.join(run_dir, "run-*.wandb")):
    found = sorted(glob.glob(os.path.join(run_dir, "offline-run-*")))
    if not found:
      raise FileNotFoundError(f"no offline W&B run in {run_dir}")
    run_dir = found[-1]
  (log_path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
  deadline = time.monotonic() + wait_s
  run = _read(run_dir, log_path)
  while not run.finished and time.monotonic() < deadline:
    time.sleep(0.2)
    run = _read(run_dir, log_path)
  return run


def _read(run_dir: str, log_path: str) -> OfflineRun:
  run = OfflineRun(run_dir, "", "", "", [], {}, [], [], {}, [], [], False)
  for record in records(log_path):
    kind = record.WhichOneof("record_type")
    if kind == "run":
      r = record.run
      run.run_id, run.group, run.job_type = r.run_id, r.run_group, r.job_type
      run.tags = list(r.tags)
      for item in r.config.update:
        _set(run.config, item)
    elif kind == "config":
      for item in record.config.update:
        _set(run.config, item)
    elif kind == "metric":
      m = record.metric
      run.metrics.append(dict(name=m.name, glob_name=m.glob_name, step_metric=m.step_metric,
                              summary=sorted(f.name for f, on in m.summary.ListFields() if on)))
    elif kind == "history":
      row = {}
      for item in record.history.item:
        _set(row, item)
      run.history.append(row)
    elif kind == "summary":
      for item in record.summary.update:
        _set(run.summary, item)
    elif kind == "artifact":
      a = record.artifact
      run.artifacts.append(dict(name=a.name, type=a.type,
                                files=[entry.path for entry in a.manifest.contents]))
    elif kind == "files":
      run.files += [f.path for f in record.files.files]
    elif kind == "exit":
      run.finished = True
  return run
