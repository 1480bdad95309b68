"""Procedural texture building blocks: tileable noise, bilinear lookup, box-filtered stripes."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def noise_tile(rng: np.random.Generator, size: int, sigmas=(1.0, 3.0, 8.0), weights=(0.2, 0.35, 0.45)) -> np.ndarray:
    """Seamless (wrap-around) smooth noise in [0, 1]: a weighted sum of blurred white-noise octaves.

    Returns float32 (size, size).
    """
    tile = np.zeros((size, size))
    for sigma, weight in zip(sigmas, weights):
        octave = gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")  # (size, size)
        tile += weight * octave / (octave.std() + 1e-12)
    tile -= tile.min()
    tile /= tile.max() + 1e-12
    return tile.astype(np.float32)


def sample_wrapped(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a tileable texture at texel coordinates (u along columns, v along rows)."""
    size_v, size_u = tile.shape
    u0 = np.floor(u)
    v0 = np.floor(v)
    fu = (u - u0).astype(np.float32)  # (N,)
    fv = (v - v0).astype(np.float32)
    iu0 = u0.astype(np.int64) % size_u
    iv0 = v0.astype(np.int64) % size_v
    iu1 = (iu0 + 1) % size_u
    iv1 = (iv0 + 1) % size_v
    top = tile[iv0, iu0] + (tile[iv0, iu1] - tile[iv0, iu0]) * fu
    bottom = tile[iv1, iu0] + (tile[iv1, iu1] - tile[iv1, iu0]) * fu
    return top + (bottom - top) * fv


def stripe_coverage(x: np.ndarray, period: float, width: float, footprint: np.ndarray) -> np.ndarray:
    """Fraction of [x - f/2, x + f/2] covered by stripes [k*period, k*period + width) (box-filtered).

    Exact anti-aliasing of a periodic pulse train: far away (footprint >> period) it tends to the
    mean coverage width/period instead of flickering.
    """
    def integral(s):  # covered length in [0, s]
        cycles = np.floor(s / period)
        return cycles * width + np.clip(s - cycles * period, 0.0, width)

    half = 0.5 * footprint
    return (integral(x + half) - integral(x - half)) / footprint


class GridRaster:
    """Fields sampled on a regular grid over a square [-half, half]^2 (bilinear).

    ``values``: (n, n) or (n, n, C), row = y, column = x, nodes at :meth:`node_axis`. Outside the
    square a sample takes ``outside`` (one value per channel), or the nearest border value if None.
    """

    def __init__(self, values: np.ndarray, half_extent: float, outside=None) -> None:
        self.values = values.astype(np.float32)
        self.half_extent = float(half_extent)
        self.cell = 2.0 * half_extent / (values.shape[0] - 1)
        self.outside = None if outside is None else np.asarray(outside, np.float32)

    @staticmethod
    def node_axis(half_extent: float, cell: float) -> np.ndarray:
        """Node coordinates along x (and y) of a grid spaced at most ``cell`` apart: (n,)."""
        return np.linspace(-half_extent, half_extent, int(np.ceil(2.0 * half_extent / cell)) + 1)

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear values at map coordinates (N,) -> (N,) or (N, C)."""
        last = self.values.shape[0] - 1
        u = np.clip((x + self.half_extent) / self.cell, 0.0, last)
        v = np.clip((y + self.half_extent) / self.cell, 0.0, last)
        iu = np.minimum(u.astype(np.int64), last - 1)  # the last node is a right neighbour only
        iv = np.minimum(v.astype(np.int64), last - 1)
        fu = (u - iu).astype(np.float32)
        fv = (v - iv).astype(np.float32)
        if self.values.ndim == 3:
            fu, fv = fu[:, None], fv[:, None]
        grid = self.values
        top = grid[iv, iu] + (grid[iv, iu + 1] - grid[iv, iu]) * fu
        bottom = grid[iv + 1, iu] + (grid[iv + 1, iu + 1] - grid[iv + 1, iu]) * fu
        value = top + (bottom - top) * fv
        if self.outside is not None:
            beyond = (np.abs(x) > self.half_extent) | (np.abs(y) > self.half_extent)
            if beyond.any():
                value[beyond] = self.outside
        return value
