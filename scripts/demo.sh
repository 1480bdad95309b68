#!/usr/bin/env bash
# The demo: set up if needed, then the embedded drone simulator + depth node, headless.
# Extra arguments go to roslaunch, e.g.  scripts/demo.sh rviz:=true   or   scripts/demo.sh model:=midas
# Depth is metric by default (scale:=ground_plane, from the drone pose over the flat ground: docs/metric_depth.md).
# Without the model's weights (nothing is ever downloaded) it says so and runs the shipped fast model
# (model:=midas), or the oracle when even that is missing.
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
has_weights() {  # $1 = model, $2 = explicit path or "": prints the weights it would run, fails when none
  python -m depth_ms.models.weights "$1" "$2"
}
if [ "$model" != oracle ]; then
  if found="$(has_weights "$model" "$weights")"; then
    echo "[demo] model '$model' runs $found"
  elif [ -z "$weights" ] && found="$(has_weights midas "")"; then
    echo "[demo] no weights for model '$model' (docs/models.md, 'Model weights': nothing is downloaded)."
    echo "[demo] running model:=midas instead, with $found"
    model=midas
  else
    echo "[demo] $found"
    echo "[demo] running model:=oracle (the simulator's ground truth) instead."
    model=oracle
  fi
fi
echo "[demo] roslaunch depth_ms drone_depth.launch sim:=true model:=$model ${args[*]:-} (Ctrl-C to stop)"
exec roslaunch depth_ms drone_depth.launch sim:=true "model:=$model" "${args[@]}"
