"""Smooth closed flight loop of the simulated drone, as a function of time."""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from depth_ms.core.transforms import make_transform

from .config import PathConfig


class FlightPath:
    """Wobbly circle ``r(a) = R (1 + w sin(k a))`` at angle ``a = 2 pi t / period``, in ENU (z up).

    Altitude oscillates smoothly between min and max, yaw follows the horizontal velocity plus a
    sinusoidal look-around. Every term is periodic in the loop period, so the path is closed and
    position, velocity and yaw are smooth (C-infinity) for all t.
    """

    def __init__(self, config: PathConfig) -> None:
        self.config = config
        self._omega = 2.0 * math.pi / config.period_s  # loop angle rate, rad/s
        self._mid_altitude = 0.5 * (config.min_altitude + config.max_altitude)
        self._half_span = 0.5 * (config.max_altitude - config.min_altitude)

    def _angle(self, t) -> np.ndarray:
        return self._omega * np.asarray(t, dtype=np.float64)

    def position(self, t) -> np.ndarray:
        """Position of base_link in map at time(s) ``t``: (..., 3)."""
        c, a = self.config, self._angle(t)
        radius = c.radius * (1.0 + c.wobble * np.sin(c.lobes * a))  # (...)
        z = self._mid_altitude + self._half_span * np.sin(c.altitude_cycles * a)  # (...)
        return np.stack([radius * np.cos(a), radius * np.sin(a), z], axis=-1)  # (..., 3)

    def velocity(self, t) -> np.ndarray:
        """Analytic time derivative of :meth:`position`: (..., 3) m/s."""
        c, a = self.config, self._angle(t)
        radius = c.radius * (1.0 + c.wobble * np.sin(c.lobes * a))
        radius_rate = c.radius * c.wobble * c.lobes * np.cos(c.lobes * a)  # d radius / d a
        vx = radius_rate * np.cos(a) - radius * np.sin(a)
        vy = radius_rate * np.sin(a) + radius * np.cos(a)
        vz = self._half_span * c.altitude_cycles * np.cos(c.altitude_cycles * a)
        return self._omega * np.stack([vx, vy, vz], axis=-1)  # (..., 3)

    def yaw(self, t) -> np.ndarray:
        """Heading (rad, ENU: 0 = east, counter-clockwise): direction of travel plus look-around."""
        c = self.config
        velocity = self.velocity(t)
        look_around = math.radians(c.yaw_amplitude_deg) * np.sin(c.yaw_cycles * self._angle(t))
        return np.arctan2(velocity[..., 1], velocity[..., 0]) + look_around

    def T_map_base(self, t: float) -> np.ndarray:
        """4x4 pose of base_link (FLU, level, yawed) in map at time ``t``."""
        rotation = Rotation.from_euler("z", float(self.yaw(t))).as_matrix()
        return make_transform(rotation, self.position(t))

    def sample_loop(self, count: int) -> np.ndarray:
        """``count`` positions evenly spaced in time over one loop: (count, 3)."""
        times = np.arange(count) * (self.config.period_s / count)
        return self.position(times)
