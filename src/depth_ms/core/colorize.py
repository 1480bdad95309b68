"""False-colour rendering of depth maps for humans (bgr8, ready for sensor_msgs/Image)."""
from __future__ import annotations

import cv2
import numpy as np

from .types import DepthKind

INVALID_BGR = (0, 0, 0)


def robust_range(values: np.ndarray, low_pct: float = 2.0, high_pct: float = 98.0) -> tuple[float, float]:
    """Percentile range of the finite values (so one outlier does not wash out the colours)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [low_pct, high_pct])
    if not high > low:
        high = low + 1e-6
    return float(low), float(high)


def colorize_depth(depth: np.ndarray, kind: DepthKind = DepthKind.METRIC,
                   value_range: tuple[float, float] | None = None,
                   colormap: int = cv2.COLORMAP_TURBO) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8 BGR; near is red, far is blue; NaN/inf are black.

    Disparity maps are coloured the same way round (large disparity = near = red).
    ``value_range`` fixes the colour scale (e.g. metres); default is a robust per-frame range.
    """
    depth = np.asarray(depth, dtype=np.float32)
    low, high = value_range if value_range is not None else robust_range(depth)
    nearness = (depth - low) / max(high - low, 1e-12)  # (H, W) 0 = low value
    if kind != DepthKind.AFFINE_DISPARITY:
        nearness = 1.0 - nearness
    valid = np.isfinite(nearness)
    scaled = np.clip(np.nan_to_num(nearness, nan=0.0), 0.0, 1.0) * 255.0
    bgr = cv2.applyColorMap(scaled.astype(np.uint8), colormap)  # (H, W, 3)
    bgr[~valid] = INVALID_BGR
    return bgr
