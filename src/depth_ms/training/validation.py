"""Validation on frames held out from training, with the labeller's alignment and metrics (per frame, least squares)."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from depth_ms.core.image_ops import resize_depth
from depth_ms.evaluation.alignment import apply_alignment, fit_scale_shift
from depth_ms.evaluation.metrics import compute_metrics, valid_mask

from .samples import Sample


def spread(samples: Sequence[Sample], limit: int) -> list[Sample]:
    """At most ``limit`` samples evenly spread over ``samples`` (all when ``limit`` is 0)."""
    if limit <= 0 or limit >= len(samples):
        return list(samples)
    return [samples[int(i)] for i in np.linspace(0, len(samples) - 1, limit).round()]


def score_relative(pred: np.ndarray, gt: np.ndarray, min_depth: float, max_depth: float,
                   space: str = "disparity") -> dict:
    """Labeller metrics of relative ``pred`` (any size; affine in ``space``: disparity or depth) against
    metric ``gt`` (H, W)."""
    pred = resize_depth(pred, gt.shape[1], gt.shape[0])  # (H, W), as the labeller resizes predictions
    mask = valid_mask(gt, min_depth, max_depth) & np.isfinite(pred)  # (H, W)
    scale, shift = fit_scale_shift(pred[mask], gt[mask], space)
    if not math.isfinite(scale):
        return {}
    aligned = apply_alignment(pred, space, scale, shift, min_depth, max_depth)  # (H, W) metres
    return compute_metrics(aligned, gt, mask)


def validate(predict: Callable[[Sample], np.ndarray], samples: Sequence[Sample], min_depth: float,
             max_depth: float, space: str = "disparity") -> dict:
    """Mean per-frame metrics of ``predict`` (sample -> relative ``space``, any size) over ``samples``;
    'frames' = count."""
    rows = [score_relative(predict(s), s.depth, min_depth, max_depth, space) for s in samples]
    rows = [r for r in rows if r]
    if not rows:
        return {"frames": 0}
    means = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    means["frames"] = len(rows)
    return means


__all__ = ["score_relative", "spread", "validate"]
