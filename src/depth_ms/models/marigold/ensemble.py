"""Ensembling of affine-invariant depth members (Marigold's test-time ensemble), numpy + scipy.

Each member gets a scale and shift; they are chosen to minimise the mean pairwise RMS difference of
the aligned members plus a small pull of the median towards the [0, 1] range (Marigold's objective,
solved with scipy's BFGS on a <= 1024 px copy). The result is the per-pixel median, rescaled to
[0, 1]; the uncertainty is the median absolute deviation on the same scale.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def _aligned(depths: np.ndarray, params: np.ndarray) -> np.ndarray:
    n = depths.shape[0]
    return depths * params[:n, None, None] + params[n:, None, None]  # (E, H, W)


def _cost(params: np.ndarray, depths: np.ndarray, regularizer: float) -> float:
    aligned = _aligned(depths, params)  # (E, H, W)
    n = aligned.shape[0]
    cost = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            cost += float(np.sqrt(np.mean((aligned[i] - aligned[j]) ** 2)))
    if regularizer > 0:
        median = np.median(aligned, axis=0)
        cost += (abs(float(median.min())) + abs(1.0 - float(median.max()))) * regularizer
    return cost


def ensemble_depth(depths: np.ndarray, regularizer: float = 0.02, max_iter: int = 2, tol: float = 1e-3,
                   max_res: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(E, H, W) members -> (depth (H, W) in [0, 1], MAD uncertainty (H, W))."""
    depths = np.asarray(depths, dtype=np.float64)
    if depths.shape[0] == 1:
        return depths[0].astype(np.float32), np.zeros(depths.shape[1:], np.float32)
    step = max(1, int(np.ceil(max(depths.shape[1:]) / max_res)))
    small = depths[:, ::step, ::step]  # alignment on a subsampled copy, like Marigold's max_res
    flat = small.reshape(small.shape[0], -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    scale = 1.0 / np.maximum(hi - lo, 1e-6)
    init = np.concatenate([scale, -scale * lo])
    result = minimize(_cost, init, args=(small, regularizer), method="BFGS", tol=tol,
                      options={"maxiter": max_iter, "disp": False})
    aligned = _aligned(depths, result.x)  # (E, H, W)
    median = np.median(aligned, axis=0)  # (H, W)
    mad = np.median(np.abs(aligned - median), axis=0)  # (H, W)
    lo, hi = float(median.min()), float(median.max())
    span = max(hi - lo, 1e-6)
    return ((median - lo) / span).astype(np.float32), (mad / span).astype(np.float32)
