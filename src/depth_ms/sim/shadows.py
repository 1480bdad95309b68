"""Sun shadows cast on the ground, baked once per world into a lit-fraction raster.

A ground point p is in shadow when the ray p + s * sun (s > 0) hits an object. Objects never move,
so the test runs once at world construction over a grid; rendering only samples it.
"""
from __future__ import annotations

import math

import numpy as np



def sun_direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector towards the sun in ENU; azimuth counter-clockwise from east (x)."""
    azimuth, elevation = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                     math.sin(elevation)])


def _box_blocks(px, py, sun, lo, hi) -> np.ndarray:
    """Slab test of rays from ground points (px, py, 0) towards the sun against one box."""
    t_near = np.zeros(px.shape)
    t_far = np.full(px.shape, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, start in enumerate((px, py, np.zeros_like(px))):
            inv = 1.0 / sun[axis] if sun[axis] != 0 else np.inf
            t1, t2 = (lo[axis] - start) * inv, (hi[axis] - start) * inv
            if sun[axis] == 0:  # parallel to the slab: inside it or never
                inside = (start >= lo[axis]) & (start <= hi[axis])
                t1, t2 = np.where(inside, -np.inf, np.inf), np.where(inside, np.inf, -np.inf)
            np.maximum(t_near, np.minimum(t1, t2), out=t_near)
            np.minimum(t_far, np.maximum(t1, t2), out=t_far)
    return t_near <= t_far


def _cylinder_blocks(px, py, sun, centre_xy, radius, z_lo, z_hi) -> np.ndarray:
    """The ray is inside the cylinder's height band for s in [z_lo, z_hi] / sun_z: a horizontal segment."""
    s_lo, s_hi = max(z_lo, 0.0) / sun[2], z_hi / sun[2]
    horizontal2 = max(sun[0] ** 2 + sun[1] ** 2, 1e-12)
    qx, qy = centre_xy[0] - px, centre_xy[1] - py
    s = np.clip((qx * sun[0] + qy * sun[1]) / horizontal2, s_lo, s_hi)
    return (qx - s * sun[0]) ** 2 + (qy - s * sun[1]) ** 2 < radius * radius


def _sphere_blocks(px, py, sun, centre, radius) -> np.ndarray:
    wx, wy, wz = centre[0] - px, centre[1] - py, centre[2]
    along = wx * sun[0] + wy * sun[1] + wz * sun[2]
    return (along > 0) & (wx * wx + wy * wy + wz * wz - along * along < radius * radius)


def ground_lit_fraction(world, sun: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Sunlit fraction (1 = lit, 0 = shadow) of ground points on the grid ``axis`` x ``axis``: (n, n), row = y."""
    lit = np.ones((len(axis), len(axis)), bool)  # (n, n)
    if sun[2] <= 0:
        return np.zeros(lit.shape, np.float32)
    cell = float(axis[1] - axis[0]) if len(axis) > 1 else 0.0

    def footprint(centre, radius):
        """Grid index ranges around the ground shadow of a bounding sphere."""
        shadow_x = centre[0] - centre[2] * sun[0] / sun[2]
        shadow_y = centre[1] - centre[2] * sun[1] / sun[2]
        reach = radius / sun[2] + cell
        cols = slice(*np.searchsorted(axis, [shadow_x - reach, shadow_x + reach]))
        rows = slice(*np.searchsorted(axis, [shadow_y - reach, shadow_y + reach]))
        return rows, cols, np.meshgrid(axis[cols], axis[rows])

    boxes, cylinders, spheres = world.boxes, world.cylinders, world.spheres
    tests = ((boxes, lambda i, px, py: _box_blocks(px, py, sun, boxes.lo[i], boxes.hi[i])),
             (cylinders, lambda i, px, py: _cylinder_blocks(px, py, sun, cylinders.centre_xy[i], cylinders.radius[i],
                                                             cylinders.z_lo[i], cylinders.z_hi[i])),
             (spheres, lambda i, px, py: _sphere_blocks(px, py, sun, spheres.centre[i], spheres.radius[i])))
    for primitives, blocks in tests:
        centres, radii = primitives.bounding_spheres()
        for i in range(len(primitives)):
            rows, cols, (px, py) = footprint(centres[i], radii[i])
            if px.size:
                lit[rows, cols] &= ~blocks(i, px, py)
    return lit.astype(np.float32)
