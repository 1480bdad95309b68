"""The ``scale`` keys shared by depth_node (``~scale``) and the labeller (``scale:``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from depth_ms.core.config import ConfigError, from_dict

SCALE_SOURCES = ("none", "fixed", "ground_truth", "ground_plane", "rangefinder")


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"scale.{key}: {message}")


@dataclass
class FitConfig:
    """Robust (RANSAC, then weighted least squares on the inliers) fit of scale and shift."""

    stride: int = 4  # fit on every n-th pixel in both directions
    iterations: int = 64  # RANSAC hypotheses (pairs of pixels) per frame
    inlier_threshold: float = 0.08  # relative depth error |d_fit - d| / d that counts as an inlier
    min_pixels: int = 50  # fewer usable pixels: no fit this frame
    min_inlier_fraction: float = 0.3  # fewer inliers among the usable pixels: no fit this frame
    min_depth_spread: float = 1.3  # d90 / d10 of the inliers below this: shift kept, only the scale is fitted

    def validate(self) -> None:
        _require(self.stride >= 1, "fit.stride", f"must be >= 1, got {self.stride}")
        _require(self.iterations >= 1, "fit.iterations", f"must be >= 1, got {self.iterations}")
        _require(0 < self.inlier_threshold < 1, "fit.inlier_threshold",
                 f"must be in (0, 1), got {self.inlier_threshold}")
        _require(self.min_pixels >= 2, "fit.min_pixels", f"must be >= 2, got {self.min_pixels}")
        _require(0 < self.min_inlier_fraction <= 1, "fit.min_inlier_fraction",
                 f"must be in (0, 1], got {self.min_inlier_fraction}")
        _require(self.min_depth_spread >= 1, "fit.min_depth_spread", f"must be >= 1, got {self.min_depth_spread}")


@dataclass
class FilterConfig:
    """Temporal filter of the fitted parameters (log scale, linear shift) with outlier gating."""

    smoothing: float = 0.5  # weight of a new fit, (0, 1]: 1 = no smoothing
    gate: float = 0.4  # a fit whose |log(scale / filtered scale)| exceeds this is rejected as an outlier
    max_rejections: int = 5  # this many rejected fits in a row: the filter restarts from the newest fit
    hold: float = 1.0  # seconds the last good estimate is kept without a valid fit; then not metric

    def validate(self) -> None:
        _require(0 < self.smoothing <= 1, "filter.smoothing", f"must be in (0, 1], got {self.smoothing}")
        _require(self.gate > 0, "filter.gate", f"must be > 0, got {self.gate}")
        _require(self.max_rejections >= 1, "filter.max_rejections", f"must be >= 1, got {self.max_rejections}")
        _require(self.hold >= 0, "filter.hold", f"must be >= 0, got {self.hold}")


@dataclass
class RangefinderConfig:
    """Downward rangefinder (sensor_msgs/Range, MAVROS distance_sensor layout)."""

    topic: str = "/mavros/distance_sensor/lidarlite_pub"  # node only; the labeller reads the same topic
    max_age: float = 0.2  # seconds between the reading and the image stamp
    anchor_weight: float = 0.2  # share of the fit's total weight given to the measured ground point when in view

    def validate(self) -> None:
        _require(bool(self.topic), "rangefinder.topic", "must not be empty")
        _require(self.max_age > 0, "rangefinder.max_age", f"must be > 0, got {self.max_age}")
        _require(0 <= self.anchor_weight < 1, "rangefinder.anchor_weight",
                 f"must be in [0, 1), got {self.anchor_weight}")


@dataclass
class ScaleConfig:
    """Where the metric scale of a relative depth map comes from, and how it is kept stable."""

    source: str = "none"  # none | fixed | ground_truth | ground_plane | rangefinder
    scale: float = 1.0  # source fixed: metres = scale * value + shift (in inverse metres for disparity models)
    shift: float = 0.0
    ground_height: float = 0.0  # z of the flat ground in the pose frame (map, ENU), metres
    max_ground_distance: float = 40.0  # ground pixels farther than this (metres along the axis) are not fitted
    max_camera_speed: float = 30.0  # m/s: a camera pose farther from the previous frame's is a jump, not fitted
    max_camera_turn_rate: float = 720.0  # deg/s: the same for the camera's rotation
    display_stretch: bool = False  # without a metric scale, publish depth/points stretched for display
    fit: FitConfig = field(default_factory=FitConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    rangefinder: RangefinderConfig = field(default_factory=RangefinderConfig)

    @property
    def uses_pose(self) -> bool:
        return self.source in ("ground_plane", "rangefinder")

    @property
    def uses_rangefinder(self) -> bool:
        """The ground height comes from the rangefinder (else from ``ground_height``)."""
        return self.source == "rangefinder"

    @property
    def reads_rangefinder(self) -> bool:
        """A fresh rangefinder reading is used: the height for ``rangefinder``, an anchor for ``ground_plane``."""
        return self.uses_pose

    def validate(self) -> None:
        _require(self.source in SCALE_SOURCES, "source", f"must be one of {', '.join(SCALE_SOURCES)}, "
                 f"got '{self.source}'")
        _require(self.scale > 0, "scale", f"must be > 0, got {self.scale}")
        _require(self.max_ground_distance > 0, "max_ground_distance",
                 f"must be > 0, got {self.max_ground_distance}")
        _require(self.max_camera_speed > 0, "max_camera_speed", f"must be > 0, got {self.max_camera_speed}")
        _require(self.max_camera_turn_rate > 0, "max_camera_turn_rate",
                 f"must be > 0, got {self.max_camera_turn_rate}")
        for part in (self.fit, self.filter, self.rangefinder):
            part.validate()


def load_scale_config(data: Optional[Mapping[str, Any]], path: str = "scale") -> ScaleConfig:
    """ScaleConfig from a mapping (None = defaults); unknown keys and bad values raise ConfigError."""
    config = from_dict(ScaleConfig, dict(data or {}), path)
    config.validate()
    return config
