"""Where model weights live on disk: one directory, never a model hub.

``$DEPTH_MS_WEIGHTS`` (default ``~/.cache/depth_ms/weights``) holds one entry per model, named as
the official release is (the README lists them). Nothing here downloads anything.
"""
from __future__ import annotations

import os

from .base import EstimatorError

# model -> file or folder name inside the weights directory (the official release names)
DEFAULT_NAMES = {
    "marigold": "marigold-depth-v1-1",
    "marigold_lcm": "marigold-depth-lcm-v1-0",
    "taesd": "taesd",
    "midas": "midas_v21_small_256.safetensors",
    "dpt_hybrid": "dpt-hybrid-midas",
    "dpt_large": "dpt-large",
    "depth_anything_v2_small": "Depth-Anything-V2-Small-hf",
}


def weights_dir() -> str:
    """The weights directory (``$DEPTH_MS_WEIGHTS`` or ``~/.cache/depth_ms/weights``)."""
    return os.path.expanduser(os.environ.get("DEPTH_MS_WEIGHTS") or "~/.cache/depth_ms/weights")


def resolve(path: str, model: str) -> str:
    """``path`` with ``~`` expanded, or the default location of ``model`` when ``path`` is empty."""
    if path:
        return os.path.expanduser(path)
    if model not in DEFAULT_NAMES:
        raise EstimatorError(f"no default weights for '{model}': give a path")
    return os.path.join(weights_dir(), DEFAULT_NAMES[model])


def require(path: str, what: str) -> str:
    """``path`` if it exists, else an EstimatorError naming it and saying how to get it."""
    if not os.path.exists(path):
        raise EstimatorError(f"{what} not found: {path} (no download at run time: put the official files "
                             f"there, or set DEPTH_MS_WEIGHTS / the estimator's weights option; see README, "
                             f"'Model weights')")
    return path
