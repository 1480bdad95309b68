"""Everything the depth node publishes for one frame, computed without ROS.

Two steps, so the metric scale can be fitted on the map at the output size in between:
:func:`output_frame` resizes and sanitises the prediction, :func:`make_products` builds the topics'
arrays from it and the frame's metric scale (None when there is none).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .affine import to_metres
from .colorize import colorize_depth
from .image_ops import resize_depth, resize_rgb, sanitize_metric_depth
from .node_config import DepthNodeConfig
from .pointcloud import depth_to_xyzrgb
from .types import DepthKind, DepthPrediction, Intrinsics


@dataclass
class OutputFrame:
    """A prediction at the output size (``output_scale`` of the input)."""

    values: np.ndarray  # (h, w) float32: metres (METRIC, NaN outside the range) or the model's relative map
    rgb: np.ndarray  # (h, w, 3) uint8
    intrinsics: Optional[Intrinsics]  # of the output size; None without camera_info
    kind: DepthKind
    uncertainty: Optional[np.ndarray] = None  # (h, w) float32 in the values' units, when the model gives one


@dataclass
class DepthProducts:
    """Arrays behind depth/image, depth/relative, depth/colored, depth/points and depth/camera_info."""

    depth: Optional[np.ndarray]  # (h, w) float32 metres, NaN invalid; None without a metric scale
    relative: Optional[np.ndarray]  # (h, w) float32 the model's own map; None for metric models
    colored: Optional[np.ndarray]  # (h, w, 3) uint8 BGR
    cloud: Optional[np.ndarray]  # (h, w) XYZRGB_DTYPE in the optical frame, metres
    cloud_is_display_stretch: bool  # the cloud's metres are a display convention, not an estimate
    intrinsics: Optional[Intrinsics]  # of the outputs
    kind: DepthKind  # of the model's map
    scale: float  # metres = scale * relative + shift (inverse metres for AFFINE_DISPARITY); NaN if not metric
    shift: float
    uncertainty: Optional[np.ndarray] = None


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


def output_frame(rgb: np.ndarray, prediction: DepthPrediction, intrinsics: Optional[Intrinsics],
                 config: DepthNodeConfig) -> OutputFrame:
    """Resize (and for metric maps clip to the range) one prediction to the output size.

    ``rgb`` (H, W, 3) uint8 and ``prediction.depth`` (H, W) share the input size.
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
    uncertainty = None
    if prediction.uncertainty is not None:
        uncertainty = resize_depth(np.asarray(prediction.uncertainty, np.float32), out_w, out_h)  # (h, w)
    return OutputFrame(resize_depth(depth, out_w, out_h), resize_rgb(rgb, out_w, out_h),
                       intrinsics.scaled_to(out_w, out_h) if intrinsics is not None else None,
                       prediction.kind, uncertainty)


def make_products(frame: OutputFrame, config: DepthNodeConfig, metric_scale: Optional[tuple[float, float]],
                  display_stretch: bool = False) -> DepthProducts:
    """The topics' arrays; ``metric_scale`` = (scale, shift) in the map's own space, None when not metric.

    Without a metric scale there is no metric depth and no cloud, unless ``display_stretch`` asks for a
    cloud stretched onto ``relative_display_range`` (then flagged as such).
    """
    metric_model = frame.kind == DepthKind.METRIC
    depth, scale, shift = None, math.nan, math.nan
    if metric_model:
        depth, scale, shift = frame.values, 1.0, 0.0
    elif metric_scale is not None:
        scale, shift = metric_scale
        depth = to_metres(frame.values, frame.kind, scale, shift, config.min_depth, config.max_depth)

    colored = None
    if config.publish_colored:
        if depth is not None:
            colored = colorize_depth(depth, DepthKind.METRIC, config.metric_color_range)
        else:
            colored = colorize_depth(frame.values, frame.kind, None)

    cloud_metres, stretched = depth, False
    if depth is None and display_stretch:
        cloud_metres, _, _ = relative_to_display_metres(frame.values, frame.kind, *config.relative_display_range)
        stretched = True
    cloud = None
    if config.publish_cloud and frame.intrinsics is not None and cloud_metres is not None:
        cloud = depth_to_xyzrgb(cloud_metres, frame.intrinsics, frame.rgb, config.cloud_stride)
    return DepthProducts(depth, None if metric_model else frame.values, colored, cloud, stretched,
                         frame.intrinsics, frame.kind, float(scale), float(shift), frame.uncertainty)
