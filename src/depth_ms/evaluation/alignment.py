"""Least-squares scale and shift alignment of predictions to ground truth (Marigold's protocol).

Spaces: ``depth`` fits ``gt ~ s * pred + t``; ``disparity`` fits ``1 / gt ~ s * pred + t`` (on pixels with
pred > 0), clips the aligned disparity at 1e-3 and inverts it; ``none`` uses the prediction's own
conversion to metres (identity for metric maps, DepthInfo's scale/shift for relative ones). Aligned
depth is then clipped to [min_depth, max_depth].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from depth_ms.core.types import DepthKind

SPACES = ("none", "depth", "disparity")
MIN_DISPARITY = 1e-3  # Marigold: aligned disparity is clipped here before inversion
MIN_POSITIVE_DEPTH = 1e-6  # Marigold: final clip so logs and ratios are defined


def resolve_space(requested: str, kind: DepthKind) -> str:
    """"auto" -> none for METRIC, depth for AFFINE_DEPTH, disparity for AFFINE_DISPARITY."""
    if requested != "auto":
        return requested
    return {DepthKind.METRIC: "none", DepthKind.AFFINE_DEPTH: "depth",
            DepthKind.AFFINE_DISPARITY: "disparity"}[DepthKind(kind)]


def native_space(kind: DepthKind) -> str:
    """The space a prediction's own scale/shift act in (used by alignment "none")."""
    return "disparity" if kind == DepthKind.AFFINE_DISPARITY else "depth"


def fit_inputs(pred: np.ndarray, gt: np.ndarray, space: str) -> tuple[np.ndarray, np.ndarray]:
    """1-D (x, y) to fit ``y ~ s * x + t`` from valid-pixel ``pred`` and ``gt`` (metres) in ``space``."""
    if space == "disparity":
        positive = pred > 0
        return pred[positive], 1.0 / gt[positive]
    return pred, gt


@dataclass
class LinearFit:
    """Streaming least squares ``y ~ scale * x + shift`` over any number of pixel batches.

    Keeps centred moments (count, means, Sxx, Sxy) and merges batches with Chan et al.'s pairwise
    update, so a whole sequence fits in float64 without cancellation and without holding its pixels.
    """

    n: float = 0.0
    mean_x: float = 0.0
    mean_y: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add a batch of 1-D samples."""
        m = float(x.size)
        if m == 0:
            return
        bx = float(x.mean(dtype=np.float64))
        by = float(y.mean(dtype=np.float64))
        dx = x - np.float32(bx)  # (N,)
        bxx = float(np.square(dx).sum(dtype=np.float64))
        bxy = float((dx * (y - np.float32(by))).sum(dtype=np.float64))
        total = self.n + m
        delta_x, delta_y = bx - self.mean_x, by - self.mean_y
        self.sxx += bxx + delta_x * delta_x * self.n * m / total
        self.sxy += bxy + delta_x * delta_y * self.n * m / total
        self.mean_x += delta_x * m / total
        self.mean_y += delta_y * m / total
        self.n = total

    def solve(self) -> tuple[float, float]:
        """(scale, shift); a constant x (no spread) gives scale 0 and the mean of y as shift."""
        if self.n == 0:
            return math.nan, math.nan
        if self.sxx <= 1e-12 * max(self.n, 1.0) * max(self.mean_x * self.mean_x, 1e-12):
            return 0.0, self.mean_y
        scale = self.sxy / self.sxx
        return scale, self.mean_y - scale * self.mean_x


def fit_scale_shift(pred: np.ndarray, gt: np.ndarray, space: str) -> tuple[float, float]:
    """One-shot least squares of valid-pixel ``pred`` to ``gt`` in ``space`` ("depth" or "disparity")."""
    fit = LinearFit()
    fit.add(*fit_inputs(pred, gt, space))
    return fit.solve()


def apply_alignment(pred: np.ndarray, space: str, scale: float, shift: float, min_depth: float,
                    max_depth: float) -> np.ndarray:
    """Metric depth from ``pred`` (any shape) with ``scale``/``shift`` in ``space``, clipped to the range.

    NaN stays NaN (pixels without prediction).
    """
    low = np.float32(max(min_depth, MIN_POSITIVE_DEPTH))
    high = np.float32(max_depth)
    aligned = pred * np.float32(scale)  # same shape as pred
    aligned += np.float32(shift)
    if space == "disparity":
        np.maximum(aligned, np.float32(MIN_DISPARITY), out=aligned)
        np.reciprocal(aligned, out=aligned)
    return np.clip(aligned, low, high, out=aligned)
