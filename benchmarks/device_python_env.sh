# Sourced (from the repository root) by the GPU training scripts: on a bare GPU machine with a CUDA torch but no
# sam2, install sam2 and its pure-Python needs from the wheels carried in .whl/ (no package registry there), then
# put the checkout on PYTHONPATH (`python3 -m training.*` must find this repo's training/, not sam2's).
if ! python3 -c "import sam2, hydra, omegaconf, iopath" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gmos_site \
    .whl/*.whl 2>&1 | tail -2
  export PYTHONPATH="/tmp/gmos_site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
