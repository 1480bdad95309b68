"""Screen-space bounds are conservative: every visible point of a primitive projects inside them."""
import math

import numpy as np

from depth_ms.core.types import Intrinsics
from depth_ms.sim import culling

INTRINSICS = Intrinsics.from_hfov(64, 48, math.radians(86.0))


def _project(points):
    """Optical-frame points (..., 3) with z > 0 -> pixel coordinates u, v."""
    return (INTRINSICS.cx + INTRINSICS.fx * points[..., 0] / points[..., 2],
            INTRINSICS.cy + INTRINSICS.fy * points[..., 1] / points[..., 2])


def _assert_inside(bounds, u, v):
    assert np.all(u >= bounds[0] - 1e-9) and np.all(u <= bounds[1] + 1e-9)
    assert np.all(v >= bounds[2] - 1e-9) and np.all(v <= bounds[3] + 1e-9)


def test_sphere_bounds_contain_every_point_in_front_of_the_camera():
    rng = np.random.default_rng(1)
    centres = np.column_stack([rng.uniform(-20, 20, 300), rng.uniform(-20, 20, 300), rng.uniform(-5, 40, 300)])
    radii = rng.uniform(0.2, 8.0, 300)
    bounds = culling.sphere_bounds(centres, radii, INTRINSICS)  # (N, 4)
    straddling = 0
    for centre, radius, bound in zip(centres, radii, bounds):
        directions = rng.standard_normal((2000, 3))
        points = centre + radius * rng.uniform(0, 1, (2000, 1)) ** (1 / 3) * directions / np.linalg.norm(
            directions, axis=1, keepdims=True)
        visible = points[points[:, 2] > 1e-3]
        if centre[2] + radius <= 0:
            assert bound[0] > bound[1]  # entirely behind: empty
        straddling += centre[2] - radius <= 0 < centre[2] + radius
        if len(visible):
            _assert_inside(bound, *_project(visible))
    assert straddling > 10


def test_hull_bounds_contain_every_point_of_the_box():
    rng = np.random.default_rng(2)
    lo = np.column_stack([rng.uniform(-20, 20, 200), rng.uniform(-20, 20, 200), rng.uniform(-5, 40, 200)])
    hi = lo + rng.uniform(0.3, 10.0, (200, 3))
    corners = culling.box_corners(lo, hi)  # (N, 8, 3)
    assert corners.shape == (200, 8, 3)
    bounds = culling.hull_bounds(corners, INTRINSICS)
    for box_lo, box_hi, bound in zip(lo, hi, bounds):
        points = rng.uniform(box_lo, box_hi, (2000, 3))
        visible = points[points[:, 2] > 1e-3]
        if len(visible):
            _assert_inside(bound, *_project(visible))


def test_pixel_windows_round_outwards_and_drop_empty_bounds():
    bounds = np.array([[10.2, 20.7, 5.5, 6.5], [np.inf, -np.inf, np.inf, -np.inf], [-np.inf, np.inf, -np.inf, np.inf],
                       [-50.0, -10.0, 0.0, 10.0]])
    windows = culling.pixel_windows(bounds, INTRINSICS)
    assert windows[0] == (5, 8, 10, 22)  # v 5..7, u 10..21 cover [10.2, 20.7] x [5.5, 6.5]
    assert windows[1] is None and windows[3] is None
    assert windows[2] == (0, 48, 0, 64)
