"""Relative depth maps in metres: ``metres = scale * value + shift``, in inverse metres for disparity maps."""
from __future__ import annotations

import numpy as np

from .types import DepthKind


def to_metres(values: np.ndarray, kind: DepthKind, scale: float, shift: float, min_depth: float,
              max_depth: float) -> np.ndarray:
    """float32 metres from a map in its own space; NaN outside [min_depth, max_depth] (REP 118)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        metres = np.float32(scale) * values + np.float32(shift)  # same shape as values
        if kind == DepthKind.AFFINE_DISPARITY:
            metres = np.where(metres > 0, 1.0 / metres, np.nan)
        valid = (metres >= min_depth) & (metres <= max_depth)
    return np.where(valid, metres, np.float32(np.nan)).astype(np.float32)
