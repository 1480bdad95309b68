# Source me: puts the venv first on PATH and sources the catkin workspace made by scripts/setup.sh.
_DEPTH_MS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$_DEPTH_MS_ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
source "$("$_DEPTH_MS_ROOT/scripts/workspace_path.sh")/devel/setup.bash"
# On AVX-512 CPUs MindSpore's bundled oneDNN picks a slow reference convolution; AVX2 kernels are fast.
if grep -q avx512f /proc/cpuinfo 2>/dev/null; then export ONEDNN_MAX_CPU_ISA="${ONEDNN_MAX_CPU_ISA:-AVX2}"; fi
unset _DEPTH_MS_ROOT
