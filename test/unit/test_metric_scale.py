"""Metric scale from the drone's state: ground-plane geometry, robust fit, temporal filter, sources."""
import math

import numpy as np
import pytest

from depth_ms.core.config import ConfigError
from depth_ms.core.transforms import make_transform
from depth_ms.core.types import DepthKind, Intrinsics
from depth_ms.metric import MetricScaler, ScaleContext, load_scale_config, to_metres
from depth_ms.metric.config import FilterConfig, FitConfig
from depth_ms.metric.filter import FITTED, HOLDING, LOST, ScaleFilter
from depth_ms.metric.fit import AffineFit, robust_affine_fit
from depth_ms.metric.ground import ground_plane_depth, project_point, rangefinder_ground_point
from depth_ms.metric.scaler import RangeReading
from depth_ms.sim import DroneSimulator, SimConfig, load_sim_config

INTRINSICS = Intrinsics.from_hfov(64, 48, math.radians(90))
# Optical frame looking straight down in an ENU map: z_optical = -z_map, x_optical = x_map, y_optical = -y_map.
DOWN = np.diag([1.0, -1.0, -1.0])


def distorted(gt: np.ndarray, kind: DepthKind) -> np.ndarray:
    """A relative map of known distortion: depth 0.05 d + 0.3, or disparity 3 / d + 0.1."""
    return (0.05 * gt + 0.3 if kind == DepthKind.AFFINE_DEPTH else 3.0 / gt + 0.1).astype(np.float32)


def test_ground_plane_depth_looking_down_is_the_height():
    depth = ground_plane_depth(INTRINSICS, make_transform(DOWN, (5.0, 2.0, 7.0)), 1.0, 40.0)
    assert depth.shape == (48, 64)
    np.testing.assert_allclose(depth, 6.0, rtol=1e-6)


def test_ground_plane_depth_level_camera_sees_ground_below_the_horizon_only():
    level = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical z = map x, y down
    depth = ground_plane_depth(INTRINSICS, make_transform(level, (0.0, 0.0, 2.0)), 0.0, 1000.0)
    rows = np.arange(48) - INTRINSICS.cy
    below = rows > 0
    assert np.isnan(depth[~below]).all()
    np.testing.assert_allclose(depth[below, 10], 2.0 * INTRINSICS.fy / rows[below], rtol=1e-5)
    assert np.isnan(ground_plane_depth(INTRINSICS, make_transform(level, (0.0, 0.0, 2.0)), 0.0, 10.0)[25, 10])


def test_ground_plane_depth_camera_under_the_plane_sees_none():
    assert np.isnan(ground_plane_depth(INTRINSICS, make_transform(DOWN, (0.0, 0.0, 1.0)), 2.0, 40.0)).all()


def test_rangefinder_point_and_projection():
    pitch_down = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # sensor x axis -> map -z
    point = rangefinder_ground_point(4.0, make_transform(pitch_down, (1.0, 2.0, 4.5)))
    np.testing.assert_allclose(point, [1.0, 2.0, 0.5])
    column, row, depth = project_point(point, INTRINSICS, make_transform(DOWN, (1.0, 2.0, 5.0)))
    assert (column, row) == (round(INTRINSICS.cx), round(INTRINSICS.cy)) and depth == pytest.approx(4.5)
    assert project_point(point, INTRINSICS, make_transform(DOWN, (1.0, 2.0, 0.0))) is None  # behind


@pytest.mark.parametrize("kind", [DepthKind.AFFINE_DEPTH, DepthKind.AFFINE_DISPARITY])
def test_robust_fit_recovers_the_distortion_and_rejects_obstacles(kind):
    rng = np.random.default_rng(1)
    ground = rng.uniform(3.0, 40.0, 2000)  # metres of the ground behind each pixel
    seen = ground.copy()
    obstacles = rng.random(2000) < 0.35  # a third of the pixels see something standing on the ground
    seen[obstacles] *= rng.uniform(0.2, 0.7, obstacles.sum())
    values = distorted(seen, kind)
    fit = robust_affine_fit(values, ground.astype(np.float32), kind, FitConfig(), np.random.default_rng(0))
    expected = (20.0, -6.0) if kind == DepthKind.AFFINE_DEPTH else (1 / 3, -1 / 30)
    assert fit.scale == pytest.approx(expected[0], rel=1e-4)
    assert fit.shift == pytest.approx(expected[1], rel=1e-3, abs=1e-6)
    assert fit.inlier_fraction == pytest.approx(1 - obstacles.mean(), abs=0.02)


def test_robust_fit_refuses_too_few_pixels_and_keeps_the_shift_without_depth_spread():
    config = FitConfig(min_pixels=50)
    rng = np.random.default_rng(0)
    assert robust_affine_fit(np.ones(10, np.float32), np.ones(10, np.float32), DepthKind.AFFINE_DEPTH,
                             config, rng) is None
    flat = np.full(200, 10.0, np.float32)  # all pixels at one depth: only the scale is observable
    fit = robust_affine_fit(flat / 4.0, flat * np.float32(1.01), DepthKind.AFFINE_DEPTH, config, rng,
                            prior_shift=0.5)
    assert fit.shift == 0.5 and fit.scale == pytest.approx((10.1 - 0.5) / 2.5, rel=1e-5)


def test_filter_smooths_in_log_scale_gates_outliers_and_restarts_after_repeated_rejections():
    f = ScaleFilter(FilterConfig(smoothing=0.5, gate=0.4, max_rejections=3, hold=1.0))
    assert f.update(AffineFit(2.0, 1.0, 1.0, 100), 0.0).scale == 2.0
    smoothed = f.update(AffineFit(8.0 ** 0.1 * 2.0, 3.0, 1.0, 100), 0.1)
    assert smoothed.state == FITTED and smoothed.scale == pytest.approx(2.0 * 8.0 ** 0.05) and smoothed.shift == 2.0
    jump = f.update(AffineFit(20.0, 0.0, 1.0, 100), 0.2)  # |log 10| > gate: rejected, last estimate held
    assert jump.state == HOLDING and jump.gated and jump.scale == pytest.approx(smoothed.scale)
    f.update(AffineFit(20.0, 0.0, 1.0, 100), 0.3)
    restarted = f.update(AffineFit(20.0, 0.0, 1.0, 100), 0.4)  # third rejection in a row: the scene changed
    assert restarted.state == FITTED and restarted.scale == 20.0
    assert f.update(None, 1.3).state == HOLDING
    assert f.update(None, 1.5).state == LOST
    f.reset()
    assert f.update(None, 1.6).state == LOST and f.shift is None


def test_to_metres_inverts_disparity_and_marks_out_of_range_nan():
    values = np.array([[0.0, 0.5, 2.0, -1.0, np.nan]], np.float32)
    np.testing.assert_allclose(to_metres(values, DepthKind.AFFINE_DISPARITY, 2.0, 0.0, 0.4, 10.0),
                               [[np.nan, 1.0, np.nan, np.nan, np.nan]])  # 0.25 m is below min_depth
    np.testing.assert_allclose(to_metres(values, DepthKind.AFFINE_DEPTH, 10.0, 1.0, 0.4, 10.0),
                               [[1.0, 6.0, np.nan, np.nan, np.nan]])


@pytest.fixture(scope="module")
def flight():
    sim = DroneSimulator(SimConfig())
    return [sim.render(i) for i in range(0, 300, 30)]


# metres = scale * value + shift in the map's own space (inverse metres for disparity) undoing ``distorted``
UNDISTORTION = {DepthKind.AFFINE_DEPTH: (20.0, -6.0), DepthKind.AFFINE_DISPARITY: (1 / 3, -1 / 30)}


@pytest.mark.parametrize("kind", [DepthKind.AFFINE_DEPTH, DepthKind.AFFINE_DISPARITY])
def test_ground_plane_source_makes_a_distorted_oracle_metric(flight, kind):
    scaler = MetricScaler(load_scale_config({"source": "ground_plane"}), kind)
    errors = []
    for frame in flight:
        values = distorted(frame.depth, kind)
        estimate = scaler.update(values, ScaleContext(frame.stamp, frame.intrinsics, frame.T_map_optical))
        assert estimate.metric and estimate.state == FITTED and estimate.inlier_fraction > 0.5
        scale, shift = UNDISTORTION[kind]
        assert estimate.scale == pytest.approx(scale, rel=0.02) and estimate.shift == pytest.approx(shift, rel=0.02)
        metres = to_metres(values, kind, estimate.scale, estimate.shift, 0.2, 65.535)
        valid = np.isfinite(metres) & np.isfinite(frame.depth)
        errors.append(np.mean(np.abs(metres[valid] - frame.depth[valid]) / frame.depth[valid]))
    assert np.mean(errors) < 0.01


def test_rangefinder_source_measures_the_ground_height(flight):
    """The map's ground is at z = 0 but the config says 3 m: the rangefinder's reading overrides it."""
    config = load_scale_config({"source": "rangefinder", "ground_height": 3.0})
    scaler = MetricScaler(config, DepthKind.AFFINE_DEPTH)
    frame = flight[3]
    down = make_transform(np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]), frame.T_map_base[:3, 3])
    height = frame.T_map_base[2, 3]
    values = distorted(frame.depth, DepthKind.AFFINE_DEPTH)
    context = ScaleContext(frame.stamp, frame.intrinsics, frame.T_map_optical)
    missing = scaler.update(values, context)
    assert not missing.metric and "rangefinder" in missing.reason and "no metric scale" in missing.change
    context.rangefinder = RangeReading(height, down)
    estimate = scaler.update(values, context)
    assert estimate.metric and estimate.scale == pytest.approx(20.0, rel=0.01)
    assert estimate.change.startswith("metric scale from rangefinder")


def test_ground_truth_fixed_none_and_metric_models(flight):
    frame = flight[0]
    values = distorted(frame.depth, DepthKind.AFFINE_DISPARITY)
    context = ScaleContext(frame.stamp, gt_depth=frame.depth)
    truth = MetricScaler(load_scale_config({"source": "ground_truth"}), DepthKind.AFFINE_DISPARITY)
    estimate = truth.update(values, context)
    assert estimate.scale == pytest.approx(1 / 3, rel=1e-5) and estimate.shift == pytest.approx(-1 / 30, rel=1e-4)
    fixed = MetricScaler(load_scale_config({"source": "fixed", "scale": 2.0, "shift": 1.0}), DepthKind.AFFINE_DEPTH)
    assert (fixed.update(values, context).scale, fixed.update(values, context).shift) == (2.0, 1.0)
    none = MetricScaler(load_scale_config({}), DepthKind.AFFINE_DEPTH).update(values, context)
    assert not none.metric and none.state == LOST
    metric = MetricScaler(load_scale_config({"source": "ground_plane"}), DepthKind.METRIC).update(values, context)
    assert metric.metric and metric.source == "model" and (metric.scale, metric.shift) == (1.0, 0.0)


def test_pose_loss_holds_then_stops_and_reset_forgets(flight):
    scaler = MetricScaler(load_scale_config({"source": "ground_plane", "filter": {"hold": 0.5}}),
                          DepthKind.AFFINE_DEPTH)
    frame = flight[0]
    values = distorted(frame.depth, DepthKind.AFFINE_DEPTH)
    assert scaler.update(values, ScaleContext(10.0, frame.intrinsics, frame.T_map_optical)).metric
    held = scaler.update(values, ScaleContext(10.3, frame.intrinsics, None))
    assert held.metric and held.state == HOLDING and held.reason == "no fresh camera pose"
    assert "holding" in held.change
    lost = scaler.update(values, ScaleContext(10.6, frame.intrinsics, None))
    assert not lost.metric and "metric topics stop" in lost.change
    scaler.update(values, ScaleContext(10.7, frame.intrinsics, frame.T_map_optical))
    scaler.reset()
    assert scaler.update(values, ScaleContext(10.8, frame.intrinsics, None)).state == LOST


def test_scale_config_is_strict():
    with pytest.raises(ConfigError, match="scale.source"):
        load_scale_config({"source": "sonar"})
    with pytest.raises(ConfigError, match="'gate_width'"):
        load_scale_config({"filter": {"gate_width": 1}})
    with pytest.raises(ConfigError, match="fit.inlier_threshold"):
        load_scale_config({"fit": {"inlier_threshold": 2.0}})


def test_sloped_ground_breaks_the_flat_ground_assumption_less_with_the_rangefinder():
    """The documented limit: over a 3 degree slope both sources stay fitted but are biased; the rangefinder,
    which measures the height under the drone, is the smaller error."""
    sim = DroneSimulator(load_sim_config({"width": 160, "height": 120,
                                          "world": {"ground_slope_deg": 3.0, "ground_slope_azimuth_deg": 30.0}}))
    frames = [sim.render(i) for i in range(0, 800, 100)]
    errors = {}
    for source in ("ground_plane", "rangefinder"):
        scaler = MetricScaler(load_scale_config({"source": source}), DepthKind.AFFINE_DISPARITY)
        per_frame = []
        for frame in frames:
            values = distorted(frame.depth, DepthKind.AFFINE_DISPARITY)
            reading = RangeReading(frame.range, frame.T_map_base @ sim.T_base_rangefinder)
            estimate = scaler.update(values, ScaleContext(frame.stamp, frame.intrinsics, frame.T_map_optical, reading))
            metres = to_metres(values, DepthKind.AFFINE_DISPARITY, estimate.scale, estimate.shift, 0.2, 65.535)
            valid = np.isfinite(metres) & np.isfinite(frame.depth)
            per_frame.append(np.mean(np.abs(metres[valid] - frame.depth[valid]) / frame.depth[valid]))
        errors[source] = np.mean(per_frame)
    assert 0.03 < errors["rangefinder"] < errors["ground_plane"] < 0.3, errors


def test_no_ground_in_view_and_a_camera_below_the_ground_never_give_metric_depth(flight):
    scaler = MetricScaler(load_scale_config({"source": "ground_plane", "filter": {"hold": 0.0}}),
                          DepthKind.AFFINE_DEPTH)
    frame = flight[0]
    values = distorted(frame.depth, DepthKind.AFFINE_DEPTH)
    sky = make_transform(np.eye(3), (0.0, 0.0, 5.0))  # optical axis straight up
    up = scaler.update(values, ScaleContext(1.0, frame.intrinsics, sky))
    assert not up.metric and up.reason == "no ground in view"
    below = MetricScaler(load_scale_config({"source": "ground_plane", "ground_height": 50.0}), DepthKind.AFFINE_DEPTH)
    estimate = below.update(values, ScaleContext(1.0, frame.intrinsics, frame.T_map_optical))
    assert not estimate.metric and estimate.reason.startswith("the camera") and "scale.ground_height" in estimate.reason


def test_a_tilted_camera_over_flat_ground_is_scaled_in_depth_and_disparity():
    """Roll and pitch of the body (the simulator flies level): rendered from tilted poses, the fit still holds."""
    sim = DroneSimulator(load_sim_config({"width": 160, "height": 120}))
    for index, (roll, pitch) in enumerate([(15.0, 0.0), (-10.0, 12.0), (5.0, -15.0)]):
        pose = sim.render(index * 40).T_map_optical
        rx, ry = math.radians(roll), math.radians(pitch)
        tilt_z = np.array([[math.cos(rx), -math.sin(rx), 0], [math.sin(rx), math.cos(rx), 0], [0, 0, 1]])  # roll
        tilt_x = np.array([[1, 0, 0], [0, math.cos(ry), -math.sin(ry)], [0, math.sin(ry), math.cos(ry)]])  # pitch
        tilted = make_transform(pose[:3, :3] @ tilt_x @ tilt_z, pose[:3, 3])  # about the optical axes
        _, depth = sim.render_at(tilted)
        for kind in (DepthKind.AFFINE_DEPTH, DepthKind.AFFINE_DISPARITY):
            scaler = MetricScaler(load_scale_config({"source": "ground_plane"}), kind)
            estimate = scaler.update(distorted(depth, kind), ScaleContext(1.0, sim.intrinsics, tilted))
            assert estimate.metric and estimate.scale == pytest.approx(UNDISTORTION[kind][0], rel=0.02), (roll, pitch)


def test_a_pose_jump_is_not_fitted_and_the_last_scale_is_held(flight):
    scaler = MetricScaler(load_scale_config({"source": "ground_plane"}), DepthKind.AFFINE_DEPTH)
    frame = flight[0]
    values = distorted(frame.depth, DepthKind.AFFINE_DEPTH)
    assert scaler.update(values, ScaleContext(10.0, frame.intrinsics, frame.T_map_optical)).state == FITTED
    jumped = frame.T_map_optical.copy()
    jumped[0, 3] += 50.0  # 50 m in 0.1 s (the same height, so the ground would fit as well)
    held = scaler.update(values, ScaleContext(10.1, frame.intrinsics, jumped))
    assert held.metric and held.state == HOLDING and held.reason == "camera pose jumped 50.0 m and 0 deg in 0.10 s"
    assert "holding" in held.change
    yaw = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about the map's z in 0.1 s
    turned = make_transform(yaw @ jumped[:3, :3], jumped[:3, 3])  # the same ground depths, seen yawed
    assert "90 deg" in scaler.update(values, ScaleContext(10.2, frame.intrinsics, turned)).reason
    steady = scaler.update(values, ScaleContext(10.3, frame.intrinsics, turned))  # the new pose holds: fitted again
    assert steady.state == FITTED and steady.scale == pytest.approx(20.0, rel=0.02)


def test_rangefinder_dropouts_hold_then_stop_and_a_range_looking_sideways_is_refused(flight):
    config = load_scale_config({"source": "rangefinder", "filter": {"hold": 0.5}})
    scaler = MetricScaler(config, DepthKind.AFFINE_DEPTH)
    frame = flight[3]
    down = make_transform(np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]), frame.T_map_base[:3, 3])
    reading = RangeReading(frame.T_map_base[2, 3], down)
    values = distorted(frame.depth, DepthKind.AFFINE_DEPTH)
    states = []
    for stamp, rangefinder in [(1.0, reading), (1.1, reading), (1.2, None), (1.5, None), (1.8, None), (1.9, reading)]:
        estimate = scaler.update(values, ScaleContext(stamp, frame.intrinsics, frame.T_map_optical, rangefinder))
        states.append((estimate.state, estimate.metric, bool(estimate.change)))
    assert states == [(FITTED, True, True), (FITTED, True, False), (HOLDING, True, True), (HOLDING, True, False),
                      (LOST, False, True), (FITTED, True, True)]
    sideways = RangeReading(10.0, make_transform(np.eye(3), frame.T_map_base[:3, 3]))  # x axis level
    refused = scaler.update(values, ScaleContext(2.0, frame.intrinsics, frame.T_map_optical, sideways))
    assert refused.state == HOLDING and refused.reason.startswith("the rangefinder does not point down")
    plane = MetricScaler(load_scale_config({"source": "ground_plane"}), DepthKind.AFFINE_DEPTH)
    anchored = plane.update(values, ScaleContext(2.0, frame.intrinsics, frame.T_map_optical, sideways))
    assert anchored.state == FITTED  # ground_plane ignores a Range looking elsewhere instead of anchoring on it


def test_intrinsics_of_another_size_are_rescaled_or_refused(flight):
    scaler = MetricScaler(load_scale_config({"source": "ground_plane"}), DepthKind.AFFINE_DEPTH)
    frame = flight[0]
    values = distorted(frame.depth, DepthKind.AFFINE_DEPTH)[::2, ::2]  # a half-size map, full-size camera_info
    estimate = scaler.update(values, ScaleContext(1.0, frame.intrinsics, frame.T_map_optical))
    assert estimate.metric and estimate.scale == pytest.approx(20.0, rel=0.02)
    other = Intrinsics.from_hfov(100, 100, 1.5)
    refused = scaler.update(values, ScaleContext(1.1, other, frame.T_map_optical))
    assert refused.reason == "camera_info is 100x100, the map 160x120"
