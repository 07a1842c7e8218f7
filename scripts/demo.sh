#!/usr/bin/env bash
# The README's main job: install, make a rosbag from a bundled real video, replay it through the node
# logic with the default model, print the summary and the paths of the overlay video and plots.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PY=${PYTHON:-python3}
exec "$PY" -m gmos_core demo "$@"
