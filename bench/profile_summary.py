"""Where a step's time goes: per-op time from a `jax.profiler` trace, by HLO op and by JAX source
line (read from the compiled HLO's metadata).

    python bench/train_throughput.py --sizes cpu --no-reference --profile /tmp/prof
    python bench/profile_summary.py /tmp/prof/ours --top 25

A trace directory holds the trace (*.xplane.pb, anywhere below it) and, when written by
train_throughput.py, the step's optimized HLO (hlo.txt) and the number of traced steps
(steps.txt). It reads events that carry `hlo_op` / `hlo_module` stats: XLA:CPU's thunks
(control-flow thunks such as `while`, which contain others, are left out so nothing is counted
twice). GPU traces carry no such events: for one, this script lists what the trace does hold.
"""

import argparse
import collections
import glob
import os
import re

import jax

_CONTAINERS = re.compile(r"^(while|conditional|call|command_buffer)")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*?metadata=\{([^}]*)\}")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_FRAME_ID = re.compile(r"stack_frame_id=(\d+)")
_TABLE_ROW = re.compile(r'^(\d+) (?:"([^"]*)"|\{([^}]*)\})$')


def op_times(xplane_path: str, module: str) -> collections.Counter:
  """{hlo op name: total nanoseconds} over the trace's leaf op events of `module`."""
  totals = collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(xplane_path).planes:
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        op = stats.get("hlo_op")
        if op is None or module not in str(stats.get("hlo_module", "")) or _CONTAINERS.match(op):
          continue
        totals[op] += event.duration_ns
  return totals


def _tables(hlo_text: str) -> dict[str, dict[int, str | dict]]:
  """The HLO text's trailing FileNames / FunctionNames / FileLocations / StackFrames tables."""
  tables, current = {}, None
  for line in hlo_text.splitlines():
    if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
      current = tables.setdefault(line, {})
    elif current is not None and (row := _TABLE_ROW.match(line)):
      index, text, fields = row.groups()
      current[int(index)] = text if text is not None else dict(
          (k, int(v)) for k, v in (f.split("=") for f in fields.split()))
    else:
      current = None
  return tables


def hlo_metadata(hlo_text: str) -> dict[str, tuple[str, str]]:
  """{instruction name: (op_name, 'file:line (function)' of its innermost traced frame)}."""
  tables = _tables(hlo_text)
  files, functions = tables.get("FileNames", {}), tables.get("FunctionNames", {})
  locations, frames = tables.get("FileLocations", {}), tables.get("StackFrames", {})

  def source(frame_id: int) -> str:
    location = locations.get(frames.get(frame_id, {}).get("file_location_id"), {})
    if not location:
      return "?"
    return (f"{os.path.basename(files.get(location['file_name_id'], '?'))}:{location['line']} "
            f"({functions.get(location['function_name_id'], '?')})")

  found = {}
  for line in hlo_text.splitlines():
    if match := _INSTRUCTION.match(line):
      op_name, frame = _OP_NAME.search(match.group(2)), _FRAME_ID.search(match.group(2))
      found[match.group(1)] = (op_name.group(1) if op_name else "?",
                               source(int(frame.group(1))) if frame else "?")
  return found


def print_table(title: str, totals: collections.Counter, per_step: float, top: int):
  whole = sum(totals.values())
  print(f"\n{title}")
  for key, ns in totals.most_common(top):
    print(f"  {ns / per_step / 1e6:9.2f} ms {ns / whole:6.1%}  {key}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("trace_dir")
  parser.add_argument("--module", default="train_step", help="only ops of HLO modules named so")
  parser.add_argument("--top", type=int, default=25)
  args = parser.parse_args()
  traces = sorted(glob.glob(os.path.join(args.trace_dir, "**", "*.xplane.pb"), recursive=True))
  if not traces:
    raise SystemExit(f"no *.xplane.pb under {args.trace_dir}: is it a jax.profiler trace dir?")
  steps_file = os.path.join(args.trace_dir, "steps.txt")
  steps = int(open(steps_file).read()) if os.path.exists(steps_file) else 1
  totals = op_times(traces[-1], args.module)
  if not totals:
    print(f"no op events of a module matching {args.module!r} in {traces[-1]}; it holds:")
    for plane in jax.profiler.ProfileData.from_file(traces[-1]).planes:
      for line in plane.lines:
        events = list(line.events)
        stats = sorted({key for event in events[:50] for key, _ in event.stats})
        print(f"  {plane.name} | {line.name}: {len(events)} events, stats {stats}")
    raise SystemExit(1)
  print(f"{traces[-1]}: {len(totals)} ops, {sum(totals.values()) / steps / 1e6:.1f} ms of op time "
        f"per step ({steps} step(s) traced)")
  print_table("by HLO op", totals, steps, args.top)
  hlo_file = os.path.join(args.trace_dir, "hlo.txt")
  if os.path.exists(hlo_file):
    meta = hlo_metadata(open(hlo_file).read())
    by_line, by_name = collections.Counter(), collections.Counter()
    for op, ns in totals.items():
      op_name, source = meta.get(op, ("(no metadata)", "?"))
      by_line[source] += ns
      # Keep the last two scopes: e.g. 'transpose(jvp(...))/dot_general' -> readable kind.
      by_name["/".join(op_name.split("/")[-2:])] += ns
    print_table("by JAX source line", by_line, steps, args.top)
    print_table("by op_name (last two scopes)", by_name, steps, args.top)


if __name__ == "__main__":
  main()
