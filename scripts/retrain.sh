#!/usr/bin/env bash
# Retrain a shipped model from scratch on this machine: render the simulator flights, train, report.
# Usage: scripts/retrain.sh fast_depth|marigold [--install] [--fresh]
#   --fresh    delete data/flights first (the flights are deterministic, so an existing complete set is
#              identical and is reused otherwise); the run folder is always deleted: training starts from scratch
#   --install  copy the trained model over the shipped one (src/depth_ms/models/shipped/)
# Extra train options go after --, e.g.  scripts/retrain.sh fast_depth -- --set optim.steps=100
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
family="${1:?usage: scripts/retrain.sh fast_depth|marigold [--install] [--fresh] [-- train options]}"; shift
install=0 fresh=0 extra=()
while (($#)); do
  case "$1" in
    --install) install=1 ;;
    --fresh) fresh=1 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "retrain: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$family" in
  fast_depth) config=config/training/fast_depth.yaml shipped=src/depth_ms/models/shipped/fast_depth_sim.safetensors ;;
  marigold) config=config/training/marigold.yaml shipped=src/depth_ms/models/shipped/marigold_sim ;;
  *) echo "retrain: unknown model family '$family' (fast_depth, marigold)" >&2; exit 2 ;;
esac
"$ROOT/scripts/setup.sh"
set +u; source "$ROOT/scripts/env.sh"; set -u
cd "$ROOT"
run="$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["output"])' "$config")"
rm -rf "$run"
if ((fresh)); then rm -rf data/flights; fi
start=$(date +%s)
echo "[retrain] rosrun depth_ms sim_flights config/training/flights.yaml -o data/flights"
rosrun depth_ms sim_flights config/training/flights.yaml -o data/flights
echo "[retrain] rosrun depth_ms train $config ${extra[*]:-}"
rosrun depth_ms train "$config" "${extra[@]}"
if [ "$family" = marigold ]; then  # a diffusers folder; logs and plots per stage
  final="$run/model" logs="$run/{vae,unet,finetune}/{log.csv,plot.png}"
else
  final="$(ls -d "$run"/checkpoints/step_* | sort | tail -1)/model.safetensors" logs="$run/{log.csv,plot.png}"
fi
echo "[retrain] $family done in $(( ($(date +%s) - start) / 60 )) min: $final (logs $logs)"
if ((install)); then
  rm -rf "$shipped"
  cp -r "$final" "$shipped"
  echo "[retrain] installed as $shipped"
fi
