#!/usr/bin/env bash
# One-shot GPU benchmark of GMOS (see benchmarks/gpu_check.py and docs/gpu.md).
#
#   bash benchmarks/gpu_check.sh                # on a GPU machine, from anywhere; < 5 minutes
#   bash benchmarks/gpu_check.sh --cpu-smoke    # tiny models on CPU in seconds: checks the script itself
#
# Other arguments go to gpu_check.py (e.g. --budget-s 200 --precisions bf16). Results: gpu_check.json and
# gpu_check.md (+ gpu_check.log) in $OUT if set, else benchmarks/gpu_results/. The Markdown table is printed last.
#
# Installing: torch is used as found (a CUDA build is expected on a GPU machine). Missing sam2 / hydra-core /
# omegaconf / antlr4 / iopath are installed from wheels in .whl/ when that folder exists (a machine with no
# package registry), else from PyPI. If torch itself is missing, `pip install torch` is tried, which needs a
# package registry (an offline machine cannot get torch this way; carry a wheel of several GB instead).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUTDIR=${OUT:-benchmarks/gpu_results}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.log"
: > "$LOG"
say() { echo "[gpu_check.sh $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
T0=$(date +%s)

if ! "$PY" -c "import torch" 2>/dev/null; then
  say "torch is missing: trying 'pip install torch' (needs a package registry; fails offline)"
  "$PY" -m pip install -q torch 2>&1 | tail -3 | tee -a "$LOG"
fi
if ! "$PY" -c "import sam2, hydra, omegaconf, iopath" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    say "installing sam2 and its pure-Python needs from .whl/ into /tmp/gmos_site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gmos_site \
      .whl/*.whl 2>&1 | tail -3 | tee -a "$LOG"
    export PYTHONPATH="/tmp/gmos_site${PYTHONPATH:+:$PYTHONPATH}"
  else
    say "sam2 missing: trying PyPI (sam2==1.1.0 without its torchvision pin, hydra-core, iopath)"
    SAM2_BUILD_CUDA=0 "$PY" -m pip install -q --no-deps sam2==1.1.0 2>&1 | tail -3 | tee -a "$LOG"
    "$PY" -m pip install -q "hydra-core>=1.3" "iopath>=0.1.10" 2>&1 | tail -3 | tee -a "$LOG"
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PYEOF' 2>&1 | tee -a "$LOG"
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuda available: {torch.cuda.is_available()}",
      flush=True)
if torch.cuda.is_available():
    print("GPU:", torch.cuda.get_device_name(0), flush=True)
PYEOF
say "setup took $(( $(date +%s) - T0 )) s"

set -o pipefail
timeout -k 15 "${GMOS_GPU_CHECK_TIMEOUT_S:-400}" "$PY" benchmarks/gpu_check.py --out "$OUTDIR" --quiet-table "$@" 2>&1 \
  | tee -a "$LOG"
rc=$?
if [ $rc -ne 0 ]; then
  say "gpu_check.py exited with $rc (124 = killed by the hard timeout); rendering what was saved"
  "$PY" benchmarks/gpu_check.py --out "$OUTDIR" --render-only 2>&1 | tee -a "$LOG"
fi
say "total $(( $(date +%s) - T0 )) s; results: $OUTDIR/gpu_check.json, $OUTDIR/gpu_check.md"
echo
cat "$OUTDIR/gpu_check.md" 2>/dev/null || echo "no results were written"
exit $rc
