# Source me: puts the venv first on PATH and sources the catkin workspace made by scripts/setup.sh.
_DEPTH_MS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$_DEPTH_MS_ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
source "$("$_DEPTH_MS_ROOT/scripts/workspace_path.sh")/devel/setup.bash"
# oneDNN's ISA cap is chosen by depth_ms.models.mindspore_device.configure(max_cpu_isa=...), not here.
unset _DEPTH_MS_ROOT
