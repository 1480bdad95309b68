"""The native kernels' library (``native/``, built by the catkin build) without MindSpore: where it is, whether
this CPU can run it, the kernels it exports and their output shapes.

Lookup: ``$DEPTH_MS_NATIVE_LIBRARY``, else the ``lib`` folders of the sourced workspaces (``$LD_LIBRARY_PATH``,
``$CMAKE_PREFIX_PATH``). The build targets the build machine's CPU (``-march=native``); the library is refused
on a CPU that lacks an instruction-set extension that build used (listed in ``depth_ms_kernels.isa`` beside
it), since its code would die with SIGILL, which Python cannot catch. ``DEPTH_MS_NATIVE_KERNELS=0`` turns the
kernels off. Each refusal is one warning naming the reason (quoting the compiler when the build failed).
"""
from __future__ import annotations

import functools
import logging
import os

_LOG = logging.getLogger(__name__)

LIBRARY = "libdepth_ms_kernels.so"
ISA_FILE = "depth_ms_kernels.isa"
BUILD_LOG = "depth_ms_kernels.build.log"


def library_dirs() -> list[str]:
    """Folders searched for the library: the ``lib`` folders of the sourced catkin workspaces."""
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    dirs += [os.path.join(p, "lib") for p in os.environ.get("CMAKE_PREFIX_PATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys(dirs))


def cpu_features(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """This CPU's feature flags, lower case without underscores (``avx512_vnni`` -> ``avx512vnni``)."""
    try:
        with open(cpuinfo) as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return set()
    return {flag.replace("_", "") for flag in line.partition(":")[2].split()}


def missing_features(library: str, available: set[str]) -> list[str]:
    """Extensions the library's build used that ``available`` lacks (all of them if its .isa is missing)."""
    isa = os.path.join(os.path.dirname(library), ISA_FILE)
    try:
        with open(isa) as f:
            needed = f.read().split()
    except OSError:
        return [f"(no {ISA_FILE} beside the library)"]
    return [feature for feature in needed if feature not in available]


def _build_log_tail(dirs: list[str], lines: int = 12) -> str:
    for folder in dirs:
        path = os.path.join(folder, BUILD_LOG)
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                tail = f.read().strip().splitlines()[-lines:]
            return f"; the build said ({path}):\n" + "\n".join(tail)
    return ""


@functools.lru_cache(maxsize=None)
def native_library() -> str | None:
    """Path of the native kernels' library, or None (disabled, not built, or built for another CPU)."""
    if os.environ.get("DEPTH_MS_NATIVE_KERNELS", "1") == "0":
        return None
    explicit = os.environ.get("DEPTH_MS_NATIVE_LIBRARY")
    dirs = [os.path.dirname(explicit)] if explicit else library_dirs()
    path = explicit or next((os.path.join(d, LIBRARY) for d in dirs if os.path.exists(os.path.join(d, LIBRARY))), None)
    if path is None or not os.path.exists(path):
        _LOG.warning("native kernels not found (%s in %s; build them with catkin_make): using MindSpore's "
                     "kernels%s", LIBRARY, explicit or os.pathsep.join(dirs) or "no sourced workspace",
                     _build_log_tail(dirs))
        return None
    missing = missing_features(path, cpu_features())
    if missing:
        _LOG.warning("native kernels %s were built for a CPU with %s, which this CPU lacks (rebuild with "
                     "catkin_make on this machine): using MindSpore's kernels", path, ", ".join(missing))
        return None
    return path


CONV_KERNELS = ("Conv3x3Plain", "Conv3x3PreRelu", "Conv3x3PreReluResidual", "Conv3x3PostRelu", "Conv1x1Plain",
                "Conv3x3FromNhwc", "Winograd3x3Plain", "Winograd3x3PreRelu", "Winograd3x3PreReluResidual",
                "Winograd3x3PostRelu", "Winograd3x3Raw", "Winograd3x3RawRelu", "Winograd3x3RawResidualRelu")
NHWC_KERNELS = ("PointwiseNhwcPlain", "PointwiseNhwcRelu6", "PointwiseNhwcResidual", "DepthwiseNhwcStride1",
                "DepthwiseNhwcStride2", "StemConv3x3Stride2Nhwc")
ROW_KERNELS = ("GeluExact", "GegluExact", "LayerNormLastAxis", "GroupNormPlain", "GroupNormRelu", "SwapAxes",
               "Attention")
KERNELS = CONV_KERNELS + NHWC_KERNELS + ROW_KERNELS


def output_shape(kernel: str, *shapes) -> tuple[int, ...]:
    """The output shape of ``kernel`` (one of KERNELS) for inputs of ``shapes`` (see native_kernels)."""
    x = tuple(shapes[0])
    if kernel == "Conv3x3FromNhwc":  # (N, H, W, C') in
        return (x[0], shapes[2][0], x[1], x[2])
    if kernel.startswith("Winograd3x3Raw"):  # raw (Co, Ci, 3, 3) weight
        return (x[0], shapes[1][0], x[2], x[3])
    if kernel in CONV_KERNELS:  # packed weight, bias (Co,)
        return (x[0], shapes[2][0], x[2], x[3])
    if kernel.startswith("PointwiseNhwc"):  # weight (Ci, Co)
        return (x[0], x[1], x[2], shapes[1][1])
    if kernel.startswith("DepthwiseNhwcStride"):
        stride = int(kernel[-1])
        return (x[0], -(-x[1] // stride), -(-x[2] // stride), x[3])
    if kernel == "StemConv3x3Stride2Nhwc":  # NCHW in, NHWC out
        return (x[0], -(-x[2] // 2), -(-x[3] // 2), shapes[1][1])
    if kernel == "Attention":  # q (B, N, H * d), k, v (B, M, H * dv), scale (H,)
        return (x[0], x[1], shapes[2][2])
    if kernel == "GegluExact":  # (..., 2 D) -> (..., D)
        return x[:-1] + (x[-1] // 2,)
    if kernel == "SwapAxes":  # (A, R, C, D) -> (A, C, R, D)
        return (x[0], x[2], x[1], x[3])
    if kernel in ROW_KERNELS:
        return x
    raise ValueError(f"unknown native kernel {kernel!r}")
