"""Robust fit of a relative map's scale and shift to pixels of known metric depth.

The fit acts in the model's own space: ``metres = s * value + t`` for affine depth,
``1 / metres = s * value + t`` for affine disparity. Residuals are relative depth errors, so near and
far pixels count alike and an obstacle standing on the ground (nearer than the ground behind it) is an
outlier that RANSAC rejects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_ms.core.types import DepthKind

from .config import FitConfig

REFITS = 6  # reweighted least-squares passes after RANSAC


@dataclass
class AffineFit:
    """Scale and shift in the model's space, with how well they explain the pixels."""

    scale: float
    shift: float
    inlier_fraction: float  # weighted share of usable pixels within the inlier threshold
    pixels: int  # usable pixels the fit saw


def relative_errors(values: np.ndarray, metres: np.ndarray, kind: DepthKind, scale, shift) -> np.ndarray:
    """|d_fit - d| / d for each pixel (broadcasts over hypothesis arrays of scale and shift)."""
    fitted = scale * values + shift
    if kind == DepthKind.AFFINE_DISPARITY:
        return np.abs(fitted * metres - 1.0)  # |1/d_fit - 1/d| * d: the relative error to first order
    return np.abs(fitted - metres) / metres


def _targets_and_weights(metres: np.ndarray, kind: DepthKind) -> tuple[np.ndarray, np.ndarray]:
    """Fit targets in the model's space and the least-squares weights that make residuals relative."""
    if kind == DepthKind.AFFINE_DISPARITY:
        return 1.0 / metres, np.square(metres)
    return metres, 1.0 / np.square(metres)


def weighted_least_squares(values: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                           fixed_shift: Optional[float] = None) -> tuple[float, float]:
    """(scale, shift) minimising sum w (s x + t - y)^2; with ``fixed_shift`` only s is solved."""
    if fixed_shift is not None:
        denominator = float(np.sum(weights * values * values))
        if denominator <= 0:
            return float("nan"), fixed_shift
        return float(np.sum(weights * values * (targets - fixed_shift)) / denominator), fixed_shift
    w = weights / weights.sum()
    mean_x, mean_y = float(np.sum(w * values)), float(np.sum(w * targets))
    dx = values - mean_x
    sxx = float(np.sum(w * dx * dx))
    if sxx <= 1e-12 * max(mean_x * mean_x, 1e-12):
        return float("nan"), float("nan")
    scale = float(np.sum(w * dx * (targets - mean_y))) / sxx
    return scale, mean_y - scale * mean_x


def robust_affine_fit(values: np.ndarray, metres: np.ndarray, kind: DepthKind, config: FitConfig,
                      rng: np.random.Generator, weights: Optional[np.ndarray] = None,
                      prior_shift: float = 0.0) -> Optional[AffineFit]:
    """Fit 1-D ``values`` (the model's output) to ``metres`` (> 0), or None when the pixels do not allow it.

    RANSAC over pixel pairs (and single pixels with ``prior_shift``) with positive scale, then iteratively
    reweighted least squares with Tukey's biweight on the relative error (zero weight beyond the inlier
    threshold), so pixels near the threshold, such as the feet of obstacles just in front of the ground,
    barely pull the fit.
    When the inliers span too little depth (d90 / d10 < ``min_depth_spread``) scale and shift are not
    separable: the shift stays ``prior_shift`` and only the scale is fitted.
    """
    usable = np.isfinite(values) & np.isfinite(metres) & (metres > 0)
    if kind == DepthKind.AFFINE_DISPARITY:
        usable &= values > 0
    values, metres = values[usable].astype(np.float64), metres[usable].astype(np.float64)  # (N,)
    weights = np.ones_like(values) if weights is None else weights[usable].astype(np.float64)  # (N,)
    if values.size < config.min_pixels:
        return None
    targets, lsq_weights = _targets_and_weights(metres, kind)  # (N,), (N,)

    pairs = rng.integers(0, values.size, size=(config.iterations, 2))  # (K, 2)
    x0, x1 = values[pairs[:, 0]], values[pairs[:, 1]]  # (K,)
    y0, y1 = targets[pairs[:, 0]], targets[pairs[:, 1]]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Pairs fix both parameters; single pixels with the prior shift cover maps of almost one depth.
        scales = np.concatenate([(y1 - y0) / (x1 - x0), (y0 - prior_shift) / x0])  # (2K,)
        shifts = np.concatenate([y0, y0]) - scales * np.concatenate([x0, x0])  # inf scales give NaN: dropped below
    good = np.isfinite(scales) & np.isfinite(shifts) & (scales > 0)
    if not good.any():
        return None
    scales, shifts = scales[good], shifts[good]
    errors = relative_errors(values[None, :], metres[None, :], kind, scales[:, None], shifts[:, None])  # (K, N)
    scores = ((errors < config.inlier_threshold) * weights[None, :]).sum(axis=1)  # (K,)
    best = int(np.argmax(scores))
    scale, shift = float(scales[best]), float(shifts[best])

    total = float(weights.sum())
    for _ in range(REFITS):
        errors = relative_errors(values, metres, kind, scale, shift)  # (N,)
        inliers = errors < config.inlier_threshold  # (N,)
        if inliers.sum() < 2:
            return None
        spread = np.percentile(metres[inliers], 90) / np.percentile(metres[inliers], 10)
        fixed = prior_shift if spread < config.min_depth_spread else None
        tukey = np.square(1.0 - np.square(errors[inliers] / config.inlier_threshold))  # (M,) biweight
        fit_w = lsq_weights[inliers] * weights[inliers] * tukey
        scale, shift = weighted_least_squares(values[inliers], targets[inliers], fit_w, fixed)
        if not (np.isfinite(scale) and np.isfinite(shift)) or scale <= 0:
            return None
    inliers = relative_errors(values, metres, kind, scale, shift) < config.inlier_threshold
    fraction = float(weights[inliers].sum() / total)
    if fraction < config.min_inlier_fraction:
        return None
    return AffineFit(scale, shift, fraction, int(values.size))
