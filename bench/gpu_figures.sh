#!/usr/bin/env bash
# The GPU training figures in one command: MobileLLM-350M at sequence 2048 against PyTorch at
# batch 16 and 8, then the same step with its layers unrolled (bench/train_throughput.py).
#
#   bash bench/gpu_figures.sh OUTDIR          # on a GPU machine; a few minutes
#
# Needs jax (CUDA), flax, torch and transformers. On a machine without ml_collections and
# without network access, put its wheel in .whl/ first (ignored by git; `pip download
# ml_collections --no-deps -d .whl`); the script installs it from there. Each figure goes to
# OUTDIR as text and as JSON lines (results.jsonl). SIZES and BATCHES override what is timed
# (e.g. SIZES=cpu BATCHES=16 to try the script on a CPU).
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
for batch in $batches; do  # x 16 fits ours alone; x 8 also fits PyTorch beside ours
  python bench/train_throughput.py --sizes "$sizes" --batch "$batch" --steps 5 --rounds 2 \
    --json "$out/results.jsonl" 2>&1 | tee -a "$out/train_throughput.txt"
done
# The same step unrolled: the gap is what the scan over layers costs on this device.
python bench/train_throughput.py --sizes "$sizes" --batch "${batches%% *}" --steps 5 --rounds 2 \
  --no-reference --set model.scan_layers=false --json "$out/results.jsonl" 2>&1 \
  | tee -a "$out/train_throughput.txt"
