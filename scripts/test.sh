#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PY=${PYTHON:-python3}
exec "$PY" -m pytest "$@"
