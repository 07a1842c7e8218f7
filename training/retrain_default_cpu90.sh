#!/usr/bin/env bash
# The default model from scratch on 2 CPU cores in about 90 minutes, in two seeded steps:
#   1. the GMOS-S part (Pi3-style encoder, SAM 2 image encoder, GMOS-S head): training/configs/default_cpu.yaml,
#      HEAD_MIN minutes of training;
#   2. the refinement stage on that head's (uncalibrated) output and the geometric mode's:
#      training/configs/default_cpu90_refiner.yaml, about 27 minutes of rendering and engine outputs, then REFINER_MIN
#      of training.
# Usage: bash training/retrain_default_cpu90.sh [OUT_DIR=runs/default_cpu90] [HEAD_MIN=30] [REFINER_MIN=30]
# (HEAD_CONFIG / REFINER_CONFIG in the environment replace the two configs: the test runs the script on tiny ones.)
# Result: OUT_DIR/gmos_default.safetensors (name gmos-default-cpu90). Each step resumes (--resume) if re-run.
# Measured wall time and scores: docs/default_model.md, "From scratch on 2 CPU cores".
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/default_cpu90}
HEAD_MIN=${2:-30}
REFINER_MIN=${3:-30}
PY=${PYTHON:-python3}
HEAD_CONFIG=${HEAD_CONFIG:-training/configs/default_cpu.yaml}
REFINER_CONFIG=${REFINER_CONFIG:-training/configs/default_cpu90_refiner.yaml}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
start=$(date +%s)
echo "[cpu90] step 1/2: GMOS-S part, ${HEAD_MIN} min of training -> $OUT/head"
"$PY" -m training.default_train --config "$HEAD_CONFIG" --out-dir "$OUT/head" --threads 2 \
    --time-budget-min "$HEAD_MIN" --resume
echo "[cpu90] step 1 done after $(( ($(date +%s) - start) / 60 )) min"
echo "[cpu90] step 2/2: refinement stage, ${REFINER_MIN} min of training -> $OUT/refiner"
"$PY" -m training.refiner_train --config "$REFINER_CONFIG" \
    --base "$OUT/head/gmos_default_uncalibrated.safetensors" --out-dir "$OUT/refiner" --threads 2 \
    --time-budget-min "$REFINER_MIN" --resume
cp "$OUT/refiner/gmos_default.safetensors" "$OUT/gmos_default.safetensors"
echo "[cpu90] done after $(( ($(date +%s) - start) / 60 )) min: $OUT/gmos_default.safetensors"
