#!/usr/bin/env bash
# The demo: set up if needed, then the embedded drone simulator + depth node, headless.
# Extra arguments go to roslaunch, e.g.  scripts/demo.sh rviz:=true   or   scripts/demo.sh model:=midas
# Without the model's weights on disk (nothing is ever downloaded) it says so and runs model:=oracle.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
set +u; source "$ROOT/scripts/env.sh"; set -u

model=marigold weights="" args=()
for arg in "$@"; do
  case "$arg" in
    model:=*) model="${arg#model:=}" ;;
    weights:=*) weights="${arg#weights:=}"; args+=("$arg") ;;
    *) args+=("$arg") ;;
  esac
done
if [ "$model" != oracle ]; then
  path="$(python -c 'import sys; from depth_ms.models import weights; print(weights.resolve(sys.argv[1], sys.argv[2]))' \
          "$weights" "$model")"
  if [ ! -e "$path" ]; then
    echo "[demo] no weights for model '$model' at $path (README, 'Model weights': nothing is downloaded)."
    echo "[demo] running model:=oracle (the simulator's ground truth) instead."
    model=oracle
  fi
fi
echo "[demo] roslaunch depth_ms drone_depth.launch sim:=true model:=$model ${args[*]:-} (Ctrl-C to stop)"
exec roslaunch depth_ms drone_depth.launch sim:=true "model:=$model" "${args[@]}"
