"""Everything the depth node publishes for one frame, computed without ROS."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .colorize import colorize_depth
from .image_ops import resize_depth, resize_rgb, sanitize_metric_depth
from .node_config import DepthNodeConfig
from .pointcloud import depth_to_xyzrgb
from .types import DepthKind, DepthPrediction, Intrinsics


@dataclass
class DepthProducts:
    """Arrays behind depth/image, depth/colored, depth/points and depth/camera_info."""

    depth: np.ndarray  # (h, w) float32: metres if METRIC, else the relative map (NaN invalid)
    colored: Optional[np.ndarray]  # (h, w, 3) uint8 BGR
    cloud: Optional[np.ndarray]  # (h', w') XYZRGB_DTYPE in the optical frame, metres
    intrinsics: Optional[Intrinsics]  # of ``depth`` (rescaled to the output size)
    kind: DepthKind
    scale: float  # metric_for_cloud = scale * value + shift (in disparity space for AFFINE_DISPARITY)
    shift: float
    uncertainty: Optional[np.ndarray] = None  # (h, w) float32 in the depth's units, when the model gives one


def relative_to_display_metres(values: np.ndarray, kind: DepthKind,
                               near: float, far: float) -> tuple[np.ndarray, float, float]:
    """Stretch a relative map onto [near, far] metres for display; returns (metres, scale, shift).

    This is a visualisation convention, not a metric estimate: AFFINE_DEPTH maps its robust
    [min, max] linearly onto [near, far]; AFFINE_DISPARITY does so in inverse depth (1/far..1/near).
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full_like(values, np.nan), 1.0, 0.0
    low, high = (float(v) for v in np.percentile(finite, [1.0, 99.0]))
    span = max(high - low, 1e-9)
    if kind == DepthKind.AFFINE_DISPARITY:
        scale = (1.0 / near - 1.0 / far) / span
        shift = 1.0 / far - low * scale
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = np.clip(values * scale + shift, 1.0 / far, 1.0 / near)
            return (1.0 / inverse).astype(np.float32), scale, shift
    scale = (far - near) / span
    shift = near - low * scale
    return np.clip(values * scale + shift, near, far).astype(np.float32), scale, shift


def make_products(rgb: np.ndarray, prediction: DepthPrediction, intrinsics: Optional[Intrinsics],
                  config: DepthNodeConfig) -> DepthProducts:
    """Resize, sanitise, colour and back-project one prediction.

    ``rgb`` (H, W, 3) uint8 and ``prediction.depth`` (H, W) share the input size. ``intrinsics``
    may be None (no camera_info yet): then no cloud and no camera_info are produced.
    """
    height, width = rgb.shape[:2]
    out_w = max(1, int(round(width * config.output_scale)))
    out_h = max(1, int(round(height * config.output_scale)))
    depth = np.asarray(prediction.depth, dtype=np.float32)
    if depth.shape != (height, width):
        raise ValueError(f"estimator returned {depth.shape[1]}x{depth.shape[0]} for a "
                         f"{width}x{height} image")
    if prediction.kind == DepthKind.METRIC:
        depth = sanitize_metric_depth(depth, config.min_depth, config.max_depth)
    else:
        depth = np.where(np.isfinite(depth), depth, np.float32(np.nan)).astype(np.float32)
    depth = resize_depth(depth, out_w, out_h)  # (h, w)
    out_rgb = resize_rgb(rgb, out_w, out_h)  # (h, w, 3)

    colored = None
    if config.publish_colored:
        color_range = config.metric_color_range if prediction.kind == DepthKind.METRIC else None
        colored = colorize_depth(depth, prediction.kind, color_range)

    scale, shift = prediction.scale, prediction.shift
    if prediction.kind == DepthKind.METRIC:
        metres = depth
    else:
        metres, scale, shift = relative_to_display_metres(depth, prediction.kind,
                                                          *config.relative_display_range)
    out_intrinsics = intrinsics.scaled_to(out_w, out_h) if intrinsics is not None else None
    cloud = None
    if config.publish_cloud and out_intrinsics is not None:
        cloud = depth_to_xyzrgb(metres, out_intrinsics, out_rgb, config.cloud_stride)
    uncertainty = None
    if prediction.uncertainty is not None:
        uncertainty = resize_depth(np.asarray(prediction.uncertainty, np.float32), out_w, out_h)  # (h, w)
    return DepthProducts(depth, colored, cloud, out_intrinsics, prediction.kind, float(scale), float(shift),
                         uncertainty)
