#!/usr/bin/env bash
# One-time (idempotent) set-up on Debian 12: ROS 1 from Debian, a venv on /usr/bin/python3 with
# --system-site-packages and the pinned pip requirements, and a catkin workspace in .ws/.
# Usage: scripts/setup.sh [--reference]   (--reference adds PyTorch CPU + diffusers for tests/benchmarks)
# Afterwards: source scripts/env.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# The catkin workspace lives outside the repository (a workspace inside its own package makes rospack and
# rosrun loop through the src/ symlink); one per checkout, keyed by its path.
WS="$("$ROOT/scripts/workspace_path.sh")"
WITH_REFERENCE=0
[[ "${1:-}" == "--reference" ]] && WITH_REFERENCE=1
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

APT_PACKAGES=(
  ros-base catkin rosbash python3-rospy python3-rosbag python3-roslaunch python3-rostest
  python3-cv-bridge python3-sensor-msgs python3-geometry-msgs python3-std-msgs python3-tf2-ros
  python3-tf2-msgs python3-message-filters python3-image-geometry
  ros-message-generation ros-message-runtime ros-std-msgs libstd-msgs-dev libsensor-msgs-dev libgeometry-msgs-dev
  rviz xvfb x11-utils python3-venv python3-dev build-essential cmake
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian ROS packages already installed"
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating venv $VENV (/usr/bin/python3, --system-site-packages)"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
[[ -d /opt/wheels ]] && PIP+=(--find-links /opt/wheels)   # the local CPU torch wheel lives there
install_requirements() {  # $1 = requirements file; reinstalls only when the file changed
  local file="$ROOT/$1" stamp="$VENV/.installed-$(basename "$1")"
  if [[ -f "$stamp" ]] && cmp -s "$file" "$stamp"; then
    say "$1 already installed"
  else
    say "pip install -r $1"
    # pip warns once per package about this machine's missing local index folders; keep real errors
    "${PIP[@]}" -r "$file" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    cp "$file" "$stamp"
  fi
}
install_requirements requirements.txt
((WITH_REFERENCE)) && install_requirements requirements-reference.txt

mkdir -p "$WS/src"
[[ -L "$WS/src/depth_ms" ]] || ln -s "$ROOT" "$WS/src/depth_ms"
say "catkin_make in $WS"
set +u; source /opt/ros/*/setup.bash 2>/dev/null || true; set -u
# DEPTH_MS_NATIVE_REQUIRED=ON (CI): the native kernels must build, without a compiler warning.
( cd "$WS" && catkin_make -DPYTHON_EXECUTABLE="$VENV/bin/python" -DCATKIN_ENABLE_TESTING=ON \
    -DCMAKE_BUILD_TYPE=Release -DDEPTH_MS_NATIVE_REQUIRED="${DEPTH_MS_NATIVE_REQUIRED:-OFF}" \
    > "$WS/catkin_make.log" 2>&1 ) \
  || { tail -30 "$WS/catkin_make.log"; echo "catkin_make failed, full log: $WS/catkin_make.log"; exit 1; }
say "ready: source scripts/env.sh, then roslaunch depth_ms drone_depth.launch"
