"""Conservative screen-space bounds of primitives, so each is intersected only with the rays it can hit.

Bounds are float rectangles (u_min, u_max, v_min, v_max) in pixel coordinates, one row per object:
(+inf, -inf, ...) = cannot be hit, (-inf, +inf, ...) = may cover the whole image. Pixel (u, v) sees
the point (x, y, z) of the optical frame when u = cx + fx * x / z and v = cy + fy * y / z.
"""
from __future__ import annotations

import numpy as np

from depth_ms.core.types import Intrinsics

_EMPTY = (np.inf, -np.inf, np.inf, -np.inf)
_WHOLE = (-np.inf, np.inf, -np.inf, np.inf)


def sphere_bounds(centres_optical: np.ndarray, radii: np.ndarray, intrinsics: Intrinsics,
                  near: float = 1e-6) -> np.ndarray:
    """Bounds of spheres (centres (N, 3) in the optical frame, radii (N,)): (N, 4).

    A sphere lies inside the box [x-r, x+r] x [z-r, z+r] of the x-z plane; over that box (z > 0) the
    slope x/z takes its extremes at the corners (likewise y/z). A sphere entirely behind the camera
    cannot be hit; one that reaches the camera plane may cover the whole image.
    """
    x, y, z = centres_optical.T
    z_near, z_far = z - radii, z + radii  # (N,)
    bounds = np.empty((len(radii), 4))
    with np.errstate(divide="ignore", invalid="ignore"):
        for column, (offset, focal, centre) in enumerate(((x, intrinsics.fx, intrinsics.cx),
                                                          (y, intrinsics.fy, intrinsics.cy))):
            slopes = np.stack([(offset - radii) / z_near, (offset - radii) / z_far,
                               (offset + radii) / z_near, (offset + radii) / z_far])  # (4, N)
            bounds[:, 2 * column] = centre + focal * slopes.min(axis=0)
            bounds[:, 2 * column + 1] = centre + focal * slopes.max(axis=0)
    bounds[z_near <= near] = _WHOLE
    bounds[z_far <= 0] = _EMPTY
    return bounds


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 8 corners of axis-aligned boxes lo, hi (N, 3): (N, 8, 3)."""
    pick_hi = np.array([[bx, by, bz] for bx in (0, 1) for by in (0, 1) for bz in (0, 1)], bool)  # (8, 3)
    return np.where(pick_hi[None], hi[:, None, :], lo[:, None, :])


def hull_bounds(corners_optical: np.ndarray, intrinsics: Intrinsics, near: float = 1e-6) -> np.ndarray:
    """Bounds of convex solids from their corners (N, K, 3) in the optical frame: (N, 4).

    A convex solid in front of the camera projects inside the hull of its projected corners; a solid
    with a corner at or behind the camera plane may cover the whole image.
    """
    z = corners_optical[..., 2]  # (N, K)
    in_front = (z > near).all(axis=1)  # (N,)
    safe_z = np.where(z > near, z, 1.0)
    u = intrinsics.cx + intrinsics.fx * corners_optical[..., 0] / safe_z  # (N, K)
    v = intrinsics.cy + intrinsics.fy * corners_optical[..., 1] / safe_z
    bounds = np.stack([u.min(axis=1), u.max(axis=1), v.min(axis=1), v.max(axis=1)], axis=1)  # (N, 4)
    bounds[~in_front] = _WHOLE
    return bounds


def intersect_bounds(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Both conditions hold: the overlap of two bound sets (N, 4)."""
    return np.stack([np.maximum(a[:, 0], b[:, 0]), np.minimum(a[:, 1], b[:, 1]),
                     np.maximum(a[:, 2], b[:, 2]), np.minimum(a[:, 3], b[:, 3])], axis=1)


def pixel_windows(bounds: np.ndarray, intrinsics: Intrinsics) -> list:
    """Per object: (v0, v1, u0, u1) end-exclusive pixel ranges covering its bounds, or None if empty."""
    width, height = intrinsics.width, intrinsics.height
    limited = np.clip(bounds, -2.0, max(width, height) + 2.0)  # tames +-inf before rounding
    u0 = np.maximum(np.floor(limited[:, 0]), 0).astype(np.int64)
    u1 = np.minimum(np.ceil(limited[:, 1]) + 1, width).astype(np.int64)
    v0 = np.maximum(np.floor(limited[:, 2]), 0).astype(np.int64)
    v1 = np.minimum(np.ceil(limited[:, 3]) + 1, height).astype(np.int64)
    return [(int(v0[i]), int(v1[i]), int(u0[i]), int(u1[i])) if u0[i] < u1[i] and v0[i] < v1[i] else None
            for i in range(len(bounds))]
