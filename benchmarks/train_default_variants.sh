#!/usr/bin/env bash
# Train the default-model size variants of training/configs/default_variants/ side by side on one GPU machine
# (one process each, 3 data workers each: a 16-core machine), each fitted to the same time budget, then
# validated and calibrated (training/default_train.py). Results: $OUT/<variant>.tar.gz (exported files, logs,
# validation.json) and $OUT/summary.txt.
#
#   bash benchmarks/train_default_variants.sh [MINUTES] [VARIANTS...]     (default: 7 base px60k wide wide_px60k)
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PYTHONUNBUFFERED=1
MIN=${1:-7}; shift || true
VARIANTS=${*:-base px60k wide wide_px60k}
OUTDIR=${OUT:-/tmp/gmos_variants}
RUNS=/tmp/gmos_variant_runs
mkdir -p "$OUTDIR" "$RUNS"
source benchmarks/device_python_env.sh
nvidia-smi -L 2>/dev/null; nproc; python3 -c "import torch, sam2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
for v in $VARIANTS; do
  mkdir -p "$RUNS/$v"
  OMP_NUM_THREADS=1 python3 -m training.default_train --config "training/configs/default_variants/$v.yaml" \
    --out-dir "$RUNS/$v" --device "${DEVICE:-cuda}" --workers "${WORKERS:-3}" --threads 1 --time-budget-min "$MIN" > "$RUNS/$v/log.txt" 2>&1 &
done
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null; tail -n 2 "$RUNS"/*/log.txt
wait
for v in $VARIANTS; do
  echo "== $v"; grep -v Warning "$RUNS/$v/log.txt" | grep -E "budget|validation|wrote|Error|error" | tail -6
  tar -czf "$OUTDIR/$v.tar.gz" -C "$RUNS/$v" --exclude state.pt .
done | tee "$OUTDIR/summary.txt"
