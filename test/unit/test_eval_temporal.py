"""Reprojection TAE and flicker on scenes with a known answer."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from depth_ms.core.types import Intrinsics
from depth_ms.evaluation.temporal import flicker, interpolate_pose, project_depth, tae_pair

K = Intrinsics(50.0, 50.0, 31.5, 23.5, 64, 48)


def _pose(x=0.0, y=0.0, z=0.0, yaw_deg=0.0):
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()  # optical y: a pan
    pose[:3, 3] = (x, y, z)
    return pose


def test_projection_with_identity_pose_is_the_depth_itself():
    depth = np.random.default_rng(0).uniform(1, 50, (48, 64)).astype(np.float32)
    np.testing.assert_array_equal(project_depth(depth, K, np.eye(4)), depth)


def test_projection_of_a_wall_after_moving_away_from_it():
    wall = np.full((48, 64), 10.0, np.float32)
    T_b_a = np.linalg.inv(_pose(z=-2.0)) @ _pose()  # camera b is 2 m farther from the wall
    projected = project_depth(wall, K, T_b_a)
    covered = projected > 0
    assert covered[10:38, 10:54].all() and not covered[0].any()  # the wall shrinks towards the centre
    np.testing.assert_allclose(projected[covered], 12.0, rtol=1e-6)


def test_tae_is_zero_for_consistent_depth_and_known_for_a_scaled_frame():
    wall = np.full((48, 64), 10.0, np.float32)
    mask = np.ones(wall.shape, bool)
    pose_a, pose_b = _pose(), _pose(z=2.0)
    assert tae_pair(wall, wall - 2.0, mask, mask, K, pose_a, pose_b) == pytest.approx(0.0, abs=1e-5)
    # frame b predicted 10 % too far: forward |8 - 8.8| / 8.8, backward |10 - 10.8| / 10, x 100, averaged
    expected = 100 * (0.8 / 8.8 + 0.8 / 10.0) / 2
    assert tae_pair(wall, (wall - 2.0) * 1.1, mask, mask, K, pose_a, pose_b) == pytest.approx(expected, rel=1e-5)


def test_tae_under_rotation_uses_the_pose():
    rng = np.random.default_rng(3)
    depth = rng.uniform(5, 6, (48, 64)).astype(np.float32)
    mask = np.ones(depth.shape, bool)
    # pure rotation: depth of a point changes, but a consistent pair must reproject onto itself
    pose_b = _pose(yaw_deg=3.0)
    T_b_a = np.linalg.inv(pose_b)
    moved = project_depth(depth, K, T_b_a)
    filled = np.where(moved > 0, moved, np.nan).astype(np.float32)
    value = tae_pair(depth, filled, mask, np.isfinite(filled), K, _pose(), pose_b)
    assert value < 1.0  # only pixel rounding remains
    nothing = np.zeros_like(mask)  # no valid ground truth in either frame: nothing to compare
    assert math.isnan(tae_pair(depth, depth, nothing, nothing, K, _pose(), pose_b))


def test_flicker_measures_change_not_explained_by_the_scene():
    gt = np.full((48, 64), 10.0, np.float32)
    mask = np.ones(gt.shape, bool)
    assert flicker(gt, gt, gt, gt, mask, mask, 0.01, 10) == (0.0, 1.0)
    noisy = gt + np.float32(0.2)  # prediction moved by 2 % where the scene did not move
    value, share = flicker(gt, noisy, gt, gt, mask, mask, 0.01, 10)
    assert value == pytest.approx(2.0, rel=1e-5) and share == 1.0
    moved_gt = gt * np.float32(1.5)  # every pixel changed: nothing static
    value, share = flicker(gt, moved_gt, gt, moved_gt, mask, mask, 0.01, 10)
    assert math.isnan(value) and share == 0.0


def test_pose_interpolation():
    before, after = (0.0, _pose(x=0.0, yaw_deg=0.0)), (1.0, _pose(x=2.0, yaw_deg=20.0))
    middle = interpolate_pose(0.25, before, after)
    np.testing.assert_allclose(middle[:3, 3], [0.5, 0, 0])
    np.testing.assert_allclose(middle[:3, :3], _pose(yaw_deg=5.0)[:3, :3], atol=1e-12)
    assert interpolate_pose(0.5, before, None) is before[1]
    assert interpolate_pose(0.5, None, None) is None
