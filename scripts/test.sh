#!/usr/bin/env bash
# Every test: set up (with the PyTorch reference), then pytest over unit, model and ROS suites.
# Extra arguments go to pytest, e.g.  scripts/test.sh -k cloud
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --reference
set +u; source "$ROOT/scripts/env.sh"; set -u
cd "$ROOT"
echo "[test] python -m pytest test $*"
exec python -m pytest test "$@"
