"""Renderer: analytic depths of each primitive (REP 118 Z along the optical axis), NaN rules, culling."""
import math

import numpy as np
import pytest

from depth_ms.core.pointcloud import depth_to_xyzrgb, transform_points
from depth_ms.core.transforms import make_transform
from depth_ms.core.types import Intrinsics
from depth_ms.sim.renderer import Renderer
from depth_ms.sim.world import Boxes, Cylinders, Spheres, World

INTRINSICS = Intrinsics.from_hfov(80, 60, math.radians(86.0))
# Optical axes (columns) for a camera looking along +x (map): z_opt = +x, x_opt = -y, y_opt = -z.
LOOK_EAST = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
LOOK_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # z_opt = -z, x_opt = +x


def _slopes(intrinsics=INTRINSICS):
    """Per-pixel (x/z, y/z) of the optical rays: each (H, W)."""
    u = (np.arange(intrinsics.width) - intrinsics.cx) / intrinsics.fx
    v = (np.arange(intrinsics.height) - intrinsics.cy) / intrinsics.fy
    return np.meshgrid(u, v)


def _pitched(rotation, pitch_down_deg):
    """Tilt an optical frame's view downwards about its own x axis."""
    angle = math.radians(pitch_down_deg)
    tilt = np.array([[1, 0, 0], [0, math.cos(angle), math.sin(angle)], [0, -math.sin(angle), math.cos(angle)]])
    return rotation @ tilt


def _ground_depth_looking_east(camera_height, intrinsics=INTRINSICS):
    """Depth of the plane z = 0 for a camera looking along +x: the ray (1, -sx, -sy) t meets it at height / sy."""
    _, sy = _slopes(intrinsics)
    with np.errstate(divide="ignore"):
        return np.where(sy > 0, camera_height / sy, np.nan)


def _render(world, pose, min_range=1e-3, max_range=1e4, **kwargs):
    return Renderer(world, INTRINSICS, min_range, max_range, **kwargs).render(pose)


def test_ground_depth_matches_the_plane_for_every_pixel():
    height = 4.0
    rotation = _pitched(LOOK_EAST, 20.0)
    pose = make_transform(rotation, (1.0, -2.0, height))
    rgb, depth = _render(World(), pose)
    sx, sy = _slopes()
    # Plane z = 0 in the optical frame: n . X = -height with n = R^T e_z, X = Z (sx, sy, 1).
    normal = rotation.T @ np.array([0.0, 0.0, 1.0])
    denominator = normal[0] * sx + normal[1] * sy + normal[2]
    expected = np.where(denominator < 0, -height / denominator, np.nan)
    expected[expected > 1e4] = np.nan  # beyond max_range
    assert np.isfinite(expected).mean() > 0.5 and np.isnan(expected).any()  # both ground and sky in view
    np.testing.assert_array_equal(np.isnan(depth), np.isnan(expected))
    ground = np.isfinite(expected)
    assert np.max(np.abs(depth[ground] - expected[ground]) / expected[ground]) < 1e-4
    # Back-projected with the package's own pixel convention, every point lies on the ground.
    cloud = depth_to_xyzrgb(depth, INTRINSICS)
    points = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1)[ground].astype(np.float64)
    assert np.abs(transform_points(points, pose)[:, 2]).max() < 1e-4 * expected[ground].max()
    assert rgb.dtype == np.uint8 and rgb.shape == (60, 80, 3) and depth.dtype == np.float32


def test_box_front_face_has_constant_depth():
    box = Boxes(lo=[[10.0, -2.0, 0.0]], hi=[[14.0, 2.0, 6.0]])
    camera_height = 2.0
    rgb, depth = _render(World(boxes=box), make_transform(LOOK_EAST, (0.0, 0.0, camera_height)))
    sx, sy = _slopes()
    # At depth 10 (x = 10) pixel (u, v) sees map y = -10 sx, z = height - 10 sy.
    on_face = (np.abs(10 * sx) < 2 - 1e-6) & (camera_height - 10 * sy > 1e-6) & (camera_height - 10 * sy < 6 - 1e-6)
    assert on_face.sum() > 100
    np.testing.assert_allclose(depth[on_face], 10.0, rtol=1e-6)
    off_face = (np.abs(10 * sx) > 2 + 1e-6) | (camera_height - 10 * sy > 6 + 1e-6) | (camera_height - 10 * sy < -1e-6)
    ground = _ground_depth_looking_east(camera_height)
    np.testing.assert_allclose(depth[off_face], ground[off_face], rtol=1e-5)  # ground beside it, or sky (NaN)


def test_cylinder_side_and_top_cap_depths():
    cylinder = Cylinders(centre_xy=[[10.0, 0.0]], radius=1.0, z_lo=0.0, z_hi=5.0)
    world = World(cylinders=cylinder)
    _, depth = _render(world, make_transform(LOOK_EAST, (0.0, 0.0, 2.0)))
    sx, sy = _slopes()
    # Map ray (1, -sx, -sy) t against (x - 10)^2 + y^2 = 1: (1 + sx^2) t^2 - 20 t + 99 = 0.
    a = 1 + sx ** 2
    disc = 100 - 99 * a
    t_side = (10 - np.sqrt(np.maximum(disc, 0))) / a
    z_hit = 2.0 - sy * t_side
    on_side = (disc > 1e-3) & (z_hit > 0.01) & (z_hit < 4.99)
    assert on_side.sum() > 20
    assert np.max(np.abs(depth[on_side] - t_side[on_side]) / t_side[on_side]) < 1e-4
    # From 8 m straight above the axis, the top cap (z = 5) is 3 m deep within the disc.
    _, depth = _render(World(cylinders=Cylinders([[0.0, 0.0]], 1.0, 0.0, 5.0)),
                       make_transform(LOOK_DOWN, (0.0, 0.0, 8.0)))
    radial = np.hypot(sx, sy) * 3.0
    np.testing.assert_allclose(depth[radial < 0.99], 3.0, rtol=1e-6)
    np.testing.assert_allclose(depth[radial > 1.01], 8.0, rtol=1e-6)  # ground around it


def test_sphere_depth_is_the_nearest_quadratic_root():
    sphere = Spheres(centre=[[10.0, 0.5, 3.0]], radius=2.0)
    _, depth = _render(World(spheres=sphere), make_transform(LOOK_EAST, (0.0, 0.0, 3.0)))
    sx, sy = _slopes()
    # |t (1, -sx, -sy) - (10, 0.5, 0)|^2 = 4.
    a = 1 + sx ** 2 + sy ** 2
    half_b = -(10.0 - 0.5 * sx)
    c = 100.0 + 0.25 - 4.0
    disc = half_b ** 2 - a * c
    hit = disc > 1e-6
    expected = (-half_b - np.sqrt(np.where(hit, disc, 0))) / a
    assert hit.sum() > 50
    assert np.max(np.abs(depth[hit] - expected[hit]) / expected[hit]) < 1e-4
    miss = disc < -1e-6
    np.testing.assert_allclose(depth[miss], _ground_depth_looking_east(3.0)[miss], rtol=1e-5)  # ground or sky


def test_nearest_primitive_wins():
    boxes = Boxes(lo=[[20.0, -5.0, 0.0]], hi=[[22.0, 5.0, 10.0]])
    spheres = Spheres(centre=[[10.0, 0.0, 2.0]], radius=1.0)
    _, depth = _render(World(boxes=boxes, spheres=spheres), make_transform(LOOK_EAST, (0.0, 0.0, 2.0)))
    centre = depth[INTRINSICS.height // 2, INTRINSICS.width // 2]
    assert centre == pytest.approx(9.0, rel=1e-6)  # sphere front, not the wall at 20


def test_sky_is_nan_and_depth_outside_the_range_is_nan():
    looking_up = _pitched(LOOK_EAST, -60.0)
    rgb, depth = _render(World(), make_transform(looking_up, (0.0, 0.0, 2.0)))
    assert np.isnan(depth).all()
    assert rgb[..., 2].mean() > rgb[..., 0].mean()  # blue sky
    box = Boxes(lo=[[10.0, -50.0, 0.0]], hi=[[11.0, 50.0, 50.0]])  # a wall filling the view at 10 m
    pose = make_transform(LOOK_EAST, (0.0, 0.0, 2.0))
    _, near = _render(World(boxes=box), pose, min_range=10.5, max_range=60.0)
    assert np.isnan(near).all()  # the wall is closer than min_range: no return, and it still occludes
    _, far = _render(World(boxes=box), pose, min_range=0.2, max_range=9.5)
    ground = _ground_depth_looking_east(2.0)
    np.testing.assert_array_equal(np.isnan(far), ~(ground <= 9.5))  # only ground nearer than 9.5 m remains
    assert np.nanmax(far) <= 9.5
    # Ground beyond max_range is NaN, nearer ground is kept.
    _, ground = _render(World(), make_transform(_pitched(LOOK_EAST, 10.0), (0.0, 0.0, 3.0)), 0.2, 30.0)
    assert np.isnan(ground).any() and np.isfinite(ground).any()
    assert np.nanmax(ground) <= 30.0 and np.nanmin(ground) >= 0.2


def test_view_distance_hides_far_objects():
    box = Boxes(lo=[[100.0, -5.0, 0.0]], hi=[[102.0, 5.0, 30.0]])
    pose = make_transform(LOOK_EAST, (0.0, 0.0, 2.0))
    _, seen = _render(World(boxes=box), pose, max_range=200.0, view_distance=1e3)
    _, hidden = _render(World(boxes=box), pose, max_range=200.0, view_distance=50.0)
    centre = (INTRINSICS.height // 2 - 5, INTRINSICS.width // 2)
    assert seen[centre] == pytest.approx(100.0) and np.isnan(hidden[centre])


def test_culling_matches_brute_force(sim_world):
    world, poses = sim_world
    renderer = Renderer(world, INTRINSICS, 0.2, 65.535, view_distance=150.0)
    for pose in poses:
        rgb_culled, depth_culled = renderer.render(pose, cull=True)
        rgb_full, depth_full = renderer.render(pose, cull=False)
        np.testing.assert_array_equal(depth_culled, depth_full)
        np.testing.assert_array_equal(rgb_culled, rgb_full)


@pytest.fixture(scope="module")
def sim_world():
    """The default procedural world and poses: along the path, and next to / inside object bounds."""
    from depth_ms.sim import DroneSimulator, SimConfig
    simulator = DroneSimulator(SimConfig(width=80, height=60))
    poses = [simulator.render_pose_only(i).T_map_optical for i in range(0, 800, 97)]
    rng = np.random.default_rng(0)
    boxes = simulator.world.boxes
    for i in range(6):  # cameras close to building corners: bounds straddle the image plane
        corner = boxes.hi[i] + np.array([0.5, 0.5, -boxes.hi[i][2] / 2])
        yaw = rng.uniform(0, 2 * math.pi)
        rotation = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
        poses.append(make_transform(rotation @ _pitched(LOOK_EAST, rng.uniform(-30, 60)), corner))
    return simulator.world, poses
