#!/usr/bin/env bash
# The demo: set up if needed, then the embedded drone simulator + depth node, headless.
# Extra arguments go to roslaunch, e.g.  scripts/demo.sh rviz:=true   or   scripts/demo.sh model:=oracle
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
set +u; source "$ROOT/scripts/env.sh"; set -u
echo "[demo] roslaunch depth_ms drone_depth.launch sim:=true $* (Ctrl-C to stop)"
exec roslaunch depth_ms drone_depth.launch sim:=true "$@"
