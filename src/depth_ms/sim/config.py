"""Configuration of the embedded drone simulator (``config/sim.yaml``).

Every value has a default; :func:`load_sim_config` rejects unknown keys and bad values, naming the key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

from depth_ms.core.config import ConfigError, load_config


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclass
class WorldConfig:
    """Procedural outdoor world: object counts and sizes (metres), lighting and haze."""

    half_extent: float = 90.0  # objects are placed in [-half_extent, half_extent]^2 around the origin
    corridor_margin: float = 6.0  # horizontal clearance between any object and the flight path
    buildings: int = 36
    building_min_size: float = 6.0  # footprint side lengths
    building_max_size: float = 22.0
    building_min_height: float = 5.0
    building_max_height: float = 30.0
    trees: int = 60
    tree_min_height: float = 4.0  # trunk plus crown
    tree_max_height: float = 11.0
    poles: int = 24
    pole_height: float = 8.0  # mean; each pole varies by +-20 %
    pole_radius: float = 0.15
    grid_spacing: float = 10.0  # ground grid lines every this many metres (0 = none)
    road_width: float = 5.0  # gravel track under the flight path (0 = none)
    view_distance: float = 150.0  # objects farther than this are not drawn (>= max_range)
    haze_distance: float = 70.0  # Gaussian haze scale: contrast exp(-(d / haze_distance)^2)
    sun_azimuth_deg: float = 135.0  # counter-clockwise from east (ENU x)
    sun_elevation_deg: float = 45.0
    ambient: float = 0.35  # share of light that does not depend on the surface orientation
    ground_slope_deg: float = 0.0  # the whole world tilted by this much (flat ground = 0); objects stand normal to it
    ground_slope_azimuth_deg: float = 0.0  # uphill direction, counter-clockwise from east

    def validate(self) -> None:
        _require(self.half_extent > 0, "world.half_extent", f"must be > 0, got {self.half_extent}")
        _require(self.corridor_margin >= 1.0, "world.corridor_margin",
                 f"must be >= 1 m (camera clearance), got {self.corridor_margin}")
        for key in ("buildings", "trees", "poles"):
            _require(getattr(self, key) >= 0, f"world.{key}", f"must be >= 0, got {getattr(self, key)}")
        for low, high in (("building_min_size", "building_max_size"),
                          ("building_min_height", "building_max_height"),
                          ("tree_min_height", "tree_max_height")):
            lo, hi = getattr(self, low), getattr(self, high)
            _require(lo > 0, f"world.{low}", f"must be > 0, got {lo}")
            _require(hi >= lo, f"world.{high}", f"must be >= world.{low} ({lo}), got {hi}")
        _require(self.pole_height > 0, "world.pole_height", f"must be > 0, got {self.pole_height}")
        _require(self.pole_radius > 0, "world.pole_radius", f"must be > 0, got {self.pole_radius}")
        _require(self.grid_spacing >= 0, "world.grid_spacing", f"must be >= 0, got {self.grid_spacing}")
        _require(self.road_width >= 0, "world.road_width", f"must be >= 0, got {self.road_width}")
        _require(self.view_distance > 0, "world.view_distance", f"must be > 0, got {self.view_distance}")
        _require(self.haze_distance > 0, "world.haze_distance", f"must be > 0, got {self.haze_distance}")
        _require(0 < self.sun_elevation_deg <= 90, "world.sun_elevation_deg",
                 f"must be in (0, 90], got {self.sun_elevation_deg}")
        _require(0 <= self.ambient <= 1, "world.ambient", f"must be in [0, 1], got {self.ambient}")
        _require(0 <= self.ground_slope_deg <= 15, "world.ground_slope_deg",
                 f"must be in [0, 15] (a gentle slope), got {self.ground_slope_deg}")


@dataclass
class PathConfig:
    """Closed flight loop: a wobbly circle with altitude and yaw oscillations (one loop per period)."""

    radius: float = 30.0  # mean horizontal radius, m
    wobble: float = 0.25  # radial modulation relative to the radius (0 = circle)
    lobes: int = 3  # radial bumps per loop
    period_s: float = 80.0  # seconds per loop
    min_altitude: float = 3.0  # m above ground (base_link)
    max_altitude: float = 12.0
    altitude_cycles: int = 2  # altitude oscillations per loop
    yaw_amplitude_deg: float = 25.0  # yaw oscillation around the direction of travel
    yaw_cycles: int = 7  # yaw oscillations per loop

    def validate(self) -> None:
        _require(self.radius > 0, "path.radius", f"must be > 0, got {self.radius}")
        _require(0 <= self.wobble < 0.9, "path.wobble", f"must be in [0, 0.9), got {self.wobble}")
        _require(self.lobes >= 0, "path.lobes", f"must be >= 0, got {self.lobes}")
        _require(self.period_s > 0, "path.period_s", f"must be > 0, got {self.period_s}")
        _require(self.min_altitude >= 1.0, "path.min_altitude", f"must be >= 1 m, got {self.min_altitude}")
        _require(self.max_altitude >= self.min_altitude, "path.max_altitude",
                 f"must be >= path.min_altitude ({self.min_altitude}), got {self.max_altitude}")
        _require(self.altitude_cycles >= 0, "path.altitude_cycles", f"must be >= 0, got {self.altitude_cycles}")
        _require(0 <= self.yaw_amplitude_deg <= 90, "path.yaw_amplitude_deg",
                 f"must be in [0, 90], got {self.yaw_amplitude_deg}")
        _require(self.yaw_cycles >= 0, "path.yaw_cycles", f"must be >= 0, got {self.yaw_cycles}")


@dataclass
class CameraMountConfig:
    """Pose of camera_link in base_link (FLU): offset in metres, pitched down by ``pitch_deg``."""

    x: float = 0.1
    y: float = 0.0
    z: float = 0.0
    pitch_deg: float = 15.0

    def validate(self) -> None:
        for key in ("x", "y", "z"):
            value = getattr(self, key)
            _require(math.isfinite(value) and abs(value) <= 1.0, f"camera.{key}",
                     f"must be within +-1 m of base_link, got {value}")
        _require(-90 <= self.pitch_deg <= 90, "camera.pitch_deg", f"must be in [-90, 90], got {self.pitch_deg}")


@dataclass
class RangefinderConfig:
    """Downward rangefinder under base_link (a PX4 lidar as MAVROS publishes it: sensor_msgs/Range)."""

    enabled: bool = True
    z: float = -0.05  # mount below base_link, m; the beam points straight down the body's -z axis
    min_range: float = 0.1  # metres; closer readings are -inf (REP 117)
    max_range: float = 40.0  # metres; no return within it reads +inf
    noise: float = 0.02  # standard deviation of the Gaussian range noise, m
    field_of_view: float = 0.05  # beam width reported in the message, rad

    def validate(self) -> None:
        _require(math.isfinite(self.z) and abs(self.z) <= 1.0, "rangefinder.z", f"must be within +-1 m, got {self.z}")
        _require(self.min_range > 0, "rangefinder.min_range", f"must be > 0, got {self.min_range}")
        _require(self.max_range > self.min_range, "rangefinder.max_range",
                 f"must be > rangefinder.min_range ({self.min_range}), got {self.max_range}")
        _require(self.noise >= 0, "rangefinder.noise", f"must be >= 0, got {self.noise}")
        _require(self.field_of_view > 0, "rangefinder.field_of_view", f"must be > 0, got {self.field_of_view}")


@dataclass
class FrameNames:
    """TF frame ids (PX4 SITL iris_depth_camera names)."""

    map: str = "map"
    base: str = "base_link"
    camera: str = "camera_link"
    optical: str = "camera_link_optical"
    rangefinder: str = "rangefinder_link"

    def validate(self) -> None:
        names = {"map": self.map, "base": self.base, "camera": self.camera, "optical": self.optical,
                 "rangefinder": self.rangefinder}
        for key, name in names.items():
            _require(bool(name.strip()), f"frames.{key}", "must not be empty")
        _require(len(set(names.values())) == len(names), "frames", f"frame ids must differ, got {names}")


@dataclass
class SimConfig:
    """The whole simulator: camera image, rate, depth range and the nested parts."""

    seed: int = 7
    width: int = 320
    height: int = 240
    hfov_deg: float = 86.0  # PX4 iris_depth_camera: 1.5009831567 rad (848x480, fx ~ 454.7)
    rate_hz: float = 10.0
    min_range: float = 0.2  # metres; closer depth is NaN
    max_range: float = 65.535  # metres; farther depth is NaN
    world: WorldConfig = field(default_factory=WorldConfig)
    path: PathConfig = field(default_factory=PathConfig)
    camera: CameraMountConfig = field(default_factory=CameraMountConfig)
    rangefinder: RangefinderConfig = field(default_factory=RangefinderConfig)
    frames: FrameNames = field(default_factory=FrameNames)

    def validate(self) -> None:
        _require(self.width >= 2, "width", f"must be >= 2, got {self.width}")
        _require(self.height >= 2, "height", f"must be >= 2, got {self.height}")
        _require(0 < self.hfov_deg < 180, "hfov_deg", f"must be in (0, 180), got {self.hfov_deg}")
        _require(self.rate_hz > 0, "rate_hz", f"must be > 0, got {self.rate_hz}")
        _require(self.min_range > 0, "min_range", f"must be > 0, got {self.min_range}")
        _require(self.max_range > self.min_range, "max_range",
                 f"must be > min_range ({self.min_range}), got {self.max_range}")
        for part in (self.world, self.path, self.camera, self.rangefinder, self.frames):
            part.validate()
        _require(self.world.view_distance >= self.max_range, "world.view_distance",
                 f"must be >= max_range ({self.max_range}), got {self.world.view_distance}")


def load_sim_config(source: Union[str, Path, Mapping[str, Any], None] = None) -> SimConfig:
    """SimConfig from a YAML file path or a mapping (None = defaults); raises ConfigError naming bad keys."""
    return load_config(SimConfig, source)
