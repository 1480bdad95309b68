"""Configuration of the depth node (ROS-free; the ROS adapter fills it from ``~`` params)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .config import ConfigError


@dataclass
class DepthNodeConfig:
    """Every ``~param`` of ``depth_node`` (docs/node.md, "Depth node parameters")."""

    model: str = "oracle"  # registered estimator name
    estimator: dict = field(default_factory=dict)  # options passed to the estimator factory
    device: str = "cpu"  # cpu | gpu | ascend (MindSpore models)
    mode: str = "pynative"  # pynative | graph (MindSpore models)
    output_scale: float = 1.0  # depth/image size relative to the input image (0 < s <= 1)
    cloud_stride: int = 1  # keep every n-th pixel in depth/points
    publish_cloud: bool = True
    publish_colored: bool = True
    optical_frame_id: str = ""  # frame of every output; "" = the input image's frame (must be optical)
    optical_parent_frame: str = ""  # if set, publish the static TF parent -> optical_frame_id (REP 103 rotation)
    metric_color_range: tuple[float, float] = (0.5, 40.0)  # metres mapped onto the colour map
    relative_display_range: tuple[float, float] = (1.0, 40.0)  # metres a relative map is stretched to for clouds
    min_depth: float = 0.2  # metres; closer metric values become NaN
    max_depth: float = 65.535  # metres; farther metric values become NaN
    time_jump_tolerance: float = 0.5  # seconds a stamp may go back before the estimator is reset
    stats_period: float = 5.0  # seconds between status log lines (0 = never)
    warm_up_size: tuple[int, int] = (0, 0)  # (w, h) to compile the model at start-up; (0, 0) = on the first frame
    pose_frame: str = "map"  # fixed frame of the camera pose handed to estimators that use it ("" = none)
    pose_timeout: float = 0.05  # seconds to wait for that TF at the image stamp
    scale: dict = field(default_factory=dict)  # metric scale of relative maps: depth_ms.metric.ScaleConfig keys

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        if self.device not in ("cpu", "gpu", "ascend"):
            raise ConfigError(f"device must be cpu, gpu or ascend, got '{self.device}'")
        if self.mode not in ("pynative", "graph"):
            raise ConfigError(f"mode must be pynative or graph, got '{self.mode}'")
        if not 0.0 < self.output_scale <= 1.0:
            raise ConfigError(f"output_scale must be in (0, 1], got {self.output_scale}")
        if self.cloud_stride < 1:
            raise ConfigError(f"cloud_stride must be >= 1, got {self.cloud_stride}")
        for name in ("metric_color_range", "relative_display_range"):
            low, high = getattr(self, name)
            if not 0.0 < low < high:
                raise ConfigError(f"{name} must satisfy 0 < near < far, got {[low, high]}")
        if not 0.0 <= self.min_depth < self.max_depth:
            raise ConfigError(f"need 0 <= min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        if self.optical_parent_frame and not self.optical_frame_id:
            raise ConfigError("optical_parent_frame needs optical_frame_id")
        if min(self.warm_up_size) < 0:
            raise ConfigError(f"warm_up_size must be >= 0, got {list(self.warm_up_size)}")
        if self.time_jump_tolerance < 0:
            raise ConfigError(f"time_jump_tolerance must be >= 0, got {self.time_jump_tolerance}")
