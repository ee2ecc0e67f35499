"""Evaluate a trained run's newest checkpoint: perplexity / bits-per-byte on the corpus' validation
and test splits, and zero-shot accuracy on the paper's tasks.

    python experiments/evaluate.py --workdir runs/depth_vs_width/L8-d128-h4kv4-share_none-s0
    python experiments/evaluate.py --workdir RUN --tasks arc_easy,piqa --limit 200

Prepares the zero-shot tasks on first use. Writes RUN/eval.json and adds the zero-shot results
to RUN/summary.json (the sweep tables read it).
"""

import argparse
import json
import os
import sys

from mobilellm_jax.training import runtime
from mobilellm_jax.training.checkpointing import CheckpointError
from mobilellm_jax.data import DataError, load_tokenizer
from mobilellm_jax.training.tracking import write_json


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="a run directory (has config.json)")
  parser.add_argument("--tasks", default="arc_easy,arc_challenge,boolq,piqa,siqa,hellaswag,obqa,"
                      "winogrande", help="comma-separated zero-shot tasks ('' for none)")
  parser.add_argument("--limit", type=int, default=0, help="questions per task (0 = all)")
  parser.add_argument("--splits", default="validation,test", help="corpus splits for perplexity")
  args = parser.parse_args(argv)
  runtime.prepare_process()  # compile cache: every run of one shape scores with the same programs
  from mobilellm_jax import evaluation  # pylint: disable=import-outside-toplevel
  from mobilellm_jax.training.loop import restore_for_eval, zeroshot_summary  # pylint: disable=import-outside-toplevel
  try:
    config, graphdef, params, step = restore_for_eval(args.workdir)
    tokenizer = load_tokenizer(config)
    config.eval.tasks, config.eval.max_examples = args.tasks, args.limit
    if args.tasks.strip() and not evaluation.tasks_prepared(config.data.data_dir or None):
      evaluation.prepare_tasks(config.data.data_dir or None)  # first use, as the launcher does
    result = {"step": step}
    for split in filter(None, args.splits.split(",")):
      result[split] = evaluation.perplexity((graphdef, params), config, split=split)
    result["zeroshot"] = zeroshot_summary((graphdef, params), config, tokenizer)
  except (CheckpointError, DataError, ValueError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  write_json(os.path.join(args.workdir, "eval.json"), result)
  summary_path = os.path.join(args.workdir, "summary.json")
  if result["zeroshot"] and os.path.exists(summary_path):
    with open(summary_path) as f:
      summary = json.load(f)
    summary["zeroshot"] = result["zeroshot"]
    write_json(summary_path, summary)  # atomic: the run's summary is never left half-written
  print(json.dumps(result, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
