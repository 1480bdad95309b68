"""FlightPath: closed, smooth, with real yaw and altitude changes."""
import math

import numpy as np
import pytest

from depth_ms.sim.config import PathConfig
from depth_ms.sim.flight_path import FlightPath


@pytest.fixture(scope="module")
def path():
    return FlightPath(PathConfig())


def test_loop_is_closed(path):
    period = path.config.period_s
    np.testing.assert_allclose(path.position(period), path.position(0.0), atol=1e-9)
    np.testing.assert_allclose(path.velocity(period), path.velocity(0.0), atol=1e-9)


def test_position_and_velocity_are_continuous_and_bounded(path):
    dt = 0.01
    times = np.arange(0.0, path.config.period_s, dt)
    positions = path.position(times)  # (N, 3)
    velocity = path.velocity(times)
    finite_difference = (path.position(times + 1e-5) - path.position(times - 1e-5)) / 2e-5
    np.testing.assert_allclose(velocity, finite_difference, atol=1e-5)  # analytic derivative is right
    speed = np.linalg.norm(velocity, axis=1)
    assert speed.max() < 6.0 and speed.min() > 0.5  # a multicopter pace, never hovering
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    assert steps.max() <= speed.max() * dt * 1.001  # no jumps
    acceleration = np.diff(velocity, axis=0) / dt
    assert np.linalg.norm(acceleration, axis=1).max() < 3.0  # velocity changes smoothly


def test_altitude_spans_the_configured_range(path):
    z = path.position(np.linspace(0.0, path.config.period_s, 4001))[:, 2]
    assert z.min() == pytest.approx(path.config.min_altitude, abs=0.01)
    assert z.max() == pytest.approx(path.config.max_altitude, abs=0.01)


def test_yaw_follows_travel_and_oscillates(path):
    times = np.linspace(0.0, path.config.period_s, 4001)
    yaw = np.unwrap(path.yaw(times))
    velocity = path.velocity(times)
    heading = np.unwrap(np.arctan2(velocity[:, 1], velocity[:, 0]))
    assert yaw[-1] - yaw[0] == pytest.approx(2 * math.pi, abs=1e-6)  # one turn per loop
    assert np.abs(np.diff(yaw)).max() < 0.05  # continuous
    look_around = np.degrees(yaw - heading)
    assert look_around.max() == pytest.approx(path.config.yaw_amplitude_deg, abs=0.5)
    assert look_around.min() == pytest.approx(-path.config.yaw_amplitude_deg, abs=0.5)


def test_pose_is_level_flu_with_the_yaw(path):
    for t in (0.0, 7.3, 41.0):
        pose = path.T_map_base(t)
        rotation = pose[:3, :3]
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        np.testing.assert_allclose(rotation[:, 2], [0, 0, 1], atol=1e-12)  # body z up (FLU, level)
        yaw = float(path.yaw(t))
        np.testing.assert_allclose(rotation[:, 0], [math.cos(yaw), math.sin(yaw), 0], atol=1e-12)
        np.testing.assert_allclose(pose[:3, 3], path.position(t))
