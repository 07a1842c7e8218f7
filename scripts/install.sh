#!/usr/bin/env bash
# Installs GMOS-ROS and what it needs on a fresh machine (no ROS needed).
#   bash scripts/install.sh          library + CLI + test tools
# torch: an existing installation is kept (CUDA or Jetson wheels); otherwise the CPU build 2.13.0.
# sam2 1.1.0: installed without its declared dependencies (they pull torchvision, which GMOS does not use)
# and without build isolation (its build requirements would otherwise download a second, CUDA, torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "[install] torch 2.13.0 (CPU build)"
  pip_install torch==2.13.0
fi
if ! "$PY" -c "import sam2, importlib.metadata as m; assert m.version('sam2') == '1.1.0'" 2>/dev/null; then
  echo "[install] sam2 1.1.0 (no deps, no build isolation, no CUDA extension)"
  pip_install setuptools wheel
  SAM2_BUILD_CUDA=0 pip_install --no-build-isolation --no-deps sam2==1.1.0
fi
echo "[install] gmos_core + test extras"
pip_install -e ".[test]"

# The real ROS 2 IDL parser (Debian package) is used by the message tests; optional elsewhere.
if ! /usr/bin/python3 -c "import rosidl_parser" 2>/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[install] python3-rosidl (Debian)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-rosidl >/dev/null) \
      || echo "[install] warning: python3-rosidl could not be installed; the .msg parser tests will fail"
  fi
fi
echo "[install] done"
