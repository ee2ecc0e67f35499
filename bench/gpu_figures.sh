#!/usr/bin/env bash
# The issue-8 GPU figures in one run, for a session that is lent the device machine (15 minutes
# of device time in all, so one prepared command):
#
#   bash bench/gpu_figures.sh "$OUT"          # on the device machine; ~6 min on an H200
#
# The device image has jax (CUDA), flax, torch and transformers, but not ml_collections: put its
# wheel in .whl/ (ignored by git; `pip download ml_collections --no-deps -d .whl`) and name .whl
# in the run's `carry`. Each figure goes to OUTDIR as text and as JSON lines (results.jsonl).
# SIZES and BATCHES override what is timed (e.g. SIZES=cpu BATCHES=16 to try the script here).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash bench/gpu_figures.sh OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! python -c "import ml_collections" 2>/dev/null; then
  ls .whl/*.whl >/dev/null 2>&1 || { echo "ml_collections missing and no wheel in .whl/" >&2; exit 2; }
  pip install -q --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true) | tee "$out/device.txt"
sizes=${SIZES:-350m-2k}
batches=${BATCHES:-16 8}
for batch in $batches; do  # 350M x 16 is the issue's target; x 8 fits PyTorch beside ours
  python bench/train_throughput.py --sizes "$sizes" --batch "$batch" --steps 5 --rounds 2 \
    --json "$out/results.jsonl" 2>&1 | tee -a "$out/train_throughput.txt"
done
# The same step unrolled: the gap is what the scan over layers costs on this device.
python bench/train_throughput.py --sizes "$sizes" --batch "${batches%% *}" --steps 5 --rounds 2 \
  --no-reference --set model.scan_layers=false --json "$out/results.jsonl" 2>&1 \
  | tee -a "$out/train_throughput.txt"
