"""The embedded drone simulator: flight path + world + camera rig + renderer, frame by frame."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_ms.core.transforms import optical_in_camera
from depth_ms.core.types import Frame, Intrinsics

from .config import SimConfig
from .flight_path import FlightPath
from .renderer import Renderer
from .raycast import nearest_hit
from .rig import camera_in_base, ground_tilt, rangefinder_in_base
from .shading import Lighting
from .world import World


@dataclass
class SimFrame:
    """One simulated frame. Transforms are 4x4, ``T_a_b`` = pose of frame b in frame a.

    ``rgb`` uint8 (H, W, 3); ``depth`` float32 (H, W) metres along the optical axis, NaN = no return.
    Both are None for :meth:`DroneSimulator.render_pose_only`.
    """

    index: int
    stamp: float  # seconds since the start of the flight
    rgb: Optional[np.ndarray]
    depth: Optional[np.ndarray]
    intrinsics: Intrinsics
    T_map_base: np.ndarray
    T_base_camera: np.ndarray
    T_camera_optical: np.ndarray
    T_map_optical: np.ndarray
    range: Optional[float] = None  # rangefinder reading, m (+inf no return, -inf too close); None if disabled

    def to_frame(self, frame_id: str = "camera_link_optical") -> Frame:
        """As the estimators' :class:`~depth_ms.core.types.Frame` (ground truth attached)."""
        return Frame(rgb=self.rgb, stamp=self.stamp, frame_id=frame_id, intrinsics=self.intrinsics,
                     pose_map_camera=self.T_map_optical, gt_depth=self.depth, sequence=self.index)


class DroneSimulator:
    """Renders frame ``index`` at time ``index / rate_hz`` along a closed flight loop (deterministic)."""

    def __init__(self, config: Optional[SimConfig] = None) -> None:
        self.config = config if config is not None else SimConfig()
        self.config.validate()
        c = self.config
        self.path = FlightPath(c.path)
        self.world = World.generate(c.seed, c.world, self.path)
        self._intrinsics = Intrinsics.from_hfov(c.width, c.height, math.radians(c.hfov_deg))
        self.T_base_camera = camera_in_base(c.camera)
        self.T_camera_optical = optical_in_camera()
        self.T_base_optical = self.T_base_camera @ self.T_camera_optical
        self.T_base_rangefinder = rangefinder_in_base(c.rangefinder)
        self.T_map_world = ground_tilt(c.world.ground_slope_deg, c.world.ground_slope_azimuth_deg)
        self.T_world_map = np.linalg.inv(self.T_map_world)
        self.renderer = Renderer(self.world, self._intrinsics, c.min_range, c.max_range, c.world.view_distance,
                                 Lighting.from_config(c.world))

    @property
    def intrinsics(self) -> Intrinsics:
        return self._intrinsics

    def time_of(self, index: int) -> float:
        """Seconds since the start of the flight of frame ``index``."""
        return index / self.config.rate_hz

    def render_pose_only(self, index: int) -> SimFrame:
        """Frame ``index`` with poses and intrinsics but without images (cheap)."""
        stamp = self.time_of(index)
        T_map_base = self.path.T_map_base(stamp)
        T_map_base[2, 3] += self.ground_height(*T_map_base[:2, 3])  # the path's altitudes are above the ground
        return SimFrame(index, stamp, None, None, self._intrinsics, T_map_base, self.T_base_camera.copy(),
                        self.T_camera_optical.copy(), T_map_base @ self.T_base_optical)

    def render(self, index: int) -> SimFrame:
        """Frame ``index`` with RGB, ground-truth depth and the rangefinder reading."""
        frame = self.render_pose_only(index)
        frame.rgb, frame.depth = self.renderer.render(self.T_world_map @ frame.T_map_optical)
        frame.range = self.range_reading(index, frame.T_map_base)
        return frame

    def range_reading(self, index: int, T_map_base: np.ndarray) -> Optional[float]:
        """The downward rangefinder's reading at frame ``index``: exact distance plus seeded Gaussian noise."""
        sensor = self.config.rangefinder
        if not sensor.enabled:
            return None
        T_world_sensor = self.T_world_map @ T_map_base @ self.T_base_rangefinder
        distance = nearest_hit(self.world, T_world_sensor[:3, 3], T_world_sensor[:3, 0])
        if not math.isfinite(distance) or distance > sensor.max_range:
            return math.inf
        distance += np.random.default_rng((self.config.seed, index)).normal(0.0, sensor.noise)
        return -math.inf if distance < sensor.min_range else float(distance)

    def render_at(self, T_map_optical: np.ndarray, cull: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(rgb, depth) seen from an arbitrary optical-frame pose."""
        return self.renderer.render(self.T_world_map @ T_map_optical, cull=cull)

    def ground_height(self, x: float, y: float) -> float:
        """Map z of the ground under (x, y): 0 on flat ground, the tilted plane through the origin otherwise."""
        normal = self.T_map_world[:3, 2]
        return float(-(normal[0] * x + normal[1] * y) / normal[2])
