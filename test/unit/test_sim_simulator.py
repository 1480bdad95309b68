"""DroneSimulator: rig transforms, timing, determinism, frames along the flight and ROS independence."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from depth_ms.sim import DroneSimulator, SimConfig, SimFrame, load_sim_config

SIM_DIR = Path(__file__).resolve().parents[2] / "src" / "depth_ms" / "sim"


@pytest.fixture(scope="module")
def simulator():
    return DroneSimulator(SimConfig(width=64, height=48))


def test_intrinsics_match_the_px4_depth_camera():
    config = load_sim_config({"width": 848, "height": 480, "world": {"buildings": 0, "trees": 0, "poles": 0}})
    intrinsics = DroneSimulator(config).intrinsics
    assert intrinsics.fx == pytest.approx(454.7, abs=0.1) and intrinsics.fy == intrinsics.fx
    assert (intrinsics.cx, intrinsics.cy, intrinsics.width, intrinsics.height) == (424.0, 240.0, 848, 480)


def test_rig_transforms(simulator):
    frame = simulator.render_pose_only(0)
    # camera_link -> optical: the standard REP 103 quaternion (x, y, z, w) = (-0.5, 0.5, -0.5, 0.5).
    quaternion = Rotation.from_matrix(frame.T_camera_optical[:3, :3]).as_quat()
    assert np.allclose(quaternion, [-0.5, 0.5, -0.5, 0.5]) or np.allclose(quaternion, [0.5, -0.5, 0.5, -0.5])
    np.testing.assert_allclose(frame.T_camera_optical[:3, 3], 0.0)
    # Optical axes in base_link (FLU): z forward and 15 deg down, x right, y down-ish.
    base_optical = frame.T_base_camera @ frame.T_camera_optical
    pitch = math.radians(15.0)
    np.testing.assert_allclose(base_optical[:3, 2], [math.cos(pitch), 0, -math.sin(pitch)], atol=1e-12)
    np.testing.assert_allclose(base_optical[:3, 0], [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(base_optical[:3, 1], [-math.sin(pitch), 0, -math.cos(pitch)], atol=1e-12)
    np.testing.assert_allclose(frame.T_base_camera[:3, 3], [0.1, 0.0, 0.0])
    np.testing.assert_allclose(frame.T_map_optical, frame.T_map_base @ base_optical, atol=1e-12)


def test_timing_and_frame_contents(simulator):
    assert simulator.time_of(25) == pytest.approx(2.5)
    frame = simulator.render(25)
    assert isinstance(frame, SimFrame) and frame.index == 25 and frame.stamp == pytest.approx(2.5)
    assert frame.rgb.shape == (48, 64, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (48, 64) and frame.depth.dtype == np.float32
    assert frame.intrinsics == simulator.intrinsics
    np.testing.assert_allclose(frame.T_map_base, simulator.path.T_map_base(2.5))
    rgb, depth = simulator.render_at(frame.T_map_optical)
    np.testing.assert_array_equal(rgb, frame.rgb)
    np.testing.assert_array_equal(depth, frame.depth)
    estimator_frame = frame.to_frame()
    assert estimator_frame.gt_depth is frame.depth and estimator_frame.intrinsics == frame.intrinsics
    pose_only = simulator.render_pose_only(25)
    assert pose_only.rgb is None and pose_only.depth is None


def test_same_seed_same_images_different_seed_different_images():
    config = dict(width=48, height=36)
    first, again = DroneSimulator(SimConfig(seed=3, **config)), DroneSimulator(SimConfig(seed=3, **config))
    other = DroneSimulator(SimConfig(seed=4, **config))
    for index in (0, 40):
        a, b, c = first.render(index), again.render(index), other.render(index)
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.depth, b.depth)
        assert not np.array_equal(a.rgb, c.rgb)
    assert not np.array_equal(first.world.boxes.lo, other.world.boxes.lo)


def test_first_100_frames_start_outside_objects_and_stay_in_range():
    # min_range near zero so that anything closer than the real 0.2 m would show up as a value.
    simulator = DroneSimulator(SimConfig(width=40, height=30, min_range=1e-4))
    frames = [simulator.render(index) for index in range(100)]
    cameras = np.array([frame.T_map_optical[:3, 3] for frame in frames])  # (100, 3)
    assert not simulator.world.contains(cameras).any()
    nearest = min(np.nanmin(frame.depth) for frame in frames)
    assert nearest >= 0.2 and nearest > 1.0  # the corridor keeps everything well away from the lens
    for frame in frames:
        sky = np.isnan(frame.depth)
        assert sky[-1].sum() == 0  # the bottom row sees the ground
        assert 0.0 < np.isfinite(frame.depth).mean()
    image_changes = [np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() for a, b in zip(frames, frames[1:])]
    assert min(image_changes) > 0.0  # the drone moves every frame


def test_images_carry_monocular_cues(simulator):
    frame = simulator.render(0)
    rgb = frame.rgb.astype(float)
    sky = np.isnan(frame.depth) & (np.arange(48)[:, None] < 24)
    assert sky.any() and rgb[sky][:, 2].mean() > rgb[sky][:, 0].mean()  # blue sky
    ground_rows = rgb[-8:].reshape(-1, 3)
    assert ground_rows.std(axis=0).mean() > 3.0  # textured ground, not flat colour
    far = frame.depth > 30
    near = frame.depth < 10
    assert far.any() and near.any()
    # Haze: far surfaces have lower contrast against the horizon colour than near ones.
    horizon = np.array([0.78, 0.84, 0.90]) * 255
    assert np.abs(rgb[far] - horizon).mean() < np.abs(rgb[near] - horizon).mean()


def test_sim_package_never_imports_rospy():
    for source in SIM_DIR.glob("*.py"):
        assert "rospy" not in source.read_text(), source
    code = "import sys, depth_ms.sim; depth_ms.sim.DroneSimulator; assert 'rospy' not in sys.modules"
    src = str(SIM_DIR.parents[1])
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {src!r}); {code}"], check=True)


def test_rangefinder_reads_the_height_above_flat_ground_with_its_noise(simulator):
    readings, heights = [], []
    for index in range(0, 400, 20):
        frame = simulator.render_pose_only(index)
        sensor = frame.T_map_base @ simulator.T_base_rangefinder
        readings.append(simulator.range_reading(index, frame.T_map_base))
        heights.append(sensor[2, 3] / -sensor[2, 0])  # distance along the beam to z = 0
    errors = np.array(readings) - np.array(heights)
    assert np.abs(errors).max() < 0.1 and 0.005 < errors.std() < 0.04  # noise 0.02 m
    assert simulator.range_reading(3, simulator.render_pose_only(3).T_map_base) == \
        simulator.range_reading(3, simulator.render_pose_only(3).T_map_base)  # seeded per frame
    off = DroneSimulator(load_sim_config({"width": 8, "height": 6, "rangefinder": {"enabled": False}}))
    assert off.render(0).range is None
    short = DroneSimulator(load_sim_config({"width": 8, "height": 6, "rangefinder": {"max_range": 2.0}}))
    assert short.render(0).range == math.inf  # no return within the range (REP 117)


def test_sloped_ground_tilts_the_world_and_keeps_the_altitude_above_it():
    config = {"width": 64, "height": 48, "world": {"ground_slope_deg": 5.0, "ground_slope_azimuth_deg": 90.0}}
    sim = DroneSimulator(load_sim_config(config))
    assert sim.ground_height(0.0, 10.0) == pytest.approx(10.0 * math.tan(math.radians(5.0)))
    assert sim.ground_height(10.0, 0.0) == pytest.approx(0.0, abs=1e-12)
    flat = DroneSimulator(load_sim_config({"width": 64, "height": 48}))
    frame, level = sim.render(150), flat.render(150)
    x, y, z = frame.T_map_base[:3, 3]
    assert z - sim.ground_height(x, y) == pytest.approx(level.T_map_base[2, 3])
    # every ground pixel back-projects onto the tilted plane
    rows, cols = np.nonzero(np.isfinite(frame.depth))
    rows, cols = rows[rows > 40], cols[rows > 40]
    depth = frame.depth[rows, cols]
    k = frame.intrinsics
    points = np.stack([(cols - k.cx) / k.fx * depth, (rows - k.cy) / k.fy * depth, depth, np.ones_like(depth)])
    world = frame.T_map_optical @ points  # (4, N)
    on_ground = np.abs(world[2] - [sim.ground_height(px, py) for px, py in zip(world[0], world[1])]) < 0.05
    assert on_ground.mean() > 0.5
