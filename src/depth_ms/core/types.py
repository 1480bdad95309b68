"""Plain data types shared by every layer (numpy only)."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np


class DepthKind(enum.IntEnum):
    """What the numbers of a depth map mean (values match ``DepthInfo.msg``)."""

    METRIC = 0  # metres along the optical axis (REP 118)
    AFFINE_DEPTH = 1  # depth up to an unknown scale and shift (Marigold)
    AFFINE_DISPARITY = 2  # inverse depth up to an unknown scale and shift (MiDaS, DPT, Depth Anything)


DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")  # sensor_msgs/distortion_models


@dataclass(frozen=True)
class Intrinsics:
    """Camera intrinsics of an image of ``width`` x ``height`` pixels (pixel centres at integers).

    Pinhole K, plus the lens distortion of CameraInfo when it has one (``distortion_model`` one of
    DISTORTION_MODELS, ``distortion`` its D coefficients); "" = an undistorted pinhole camera.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion_model: str = ""
    distortion: tuple = ()

    @classmethod
    def from_hfov(cls, width: int, height: int, hfov_rad: float) -> "Intrinsics":
        """Square pixels, principal point at the image centre (Gazebo's camera plugin convention)."""
        fx = width / 2.0 / math.tan(hfov_rad / 2.0)
        return cls(fx, fx, width / 2.0, height / 2.0, int(width), int(height))

    @classmethod
    def from_k(cls, k, width: int, height: int) -> "Intrinsics":
        """From a row-major 3x3 camera matrix (``CameraInfo.K``)."""
        k = np.asarray(k, dtype=np.float64).reshape(3, 3)
        return cls(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), int(width), int(height))

    @property
    def k(self) -> np.ndarray:
        """3x3 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    def is_valid(self) -> bool:
        """True when focal lengths are positive and finite and the size is non-empty."""
        values = (self.fx, self.fy, self.cx, self.cy)
        return all(math.isfinite(v) for v in values) and self.fx > 0 and self.fy > 0 \
            and self.width > 0 and self.height > 0

    def scaled_to(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the same camera resampled to ``width`` x ``height``.

        With pixel centres at integer coordinates a resize by s maps u to (u + 0.5) * s - 0.5.
        """
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                          int(width), int(height), self.distortion_model, self.distortion)  # D: normalised coords

    def principal_point_near_centre(self, tolerance: float = 0.25) -> bool:
        """True when (cx, cy) lies within ``tolerance`` of the image size from the image centre."""
        return (abs(self.cx - (self.width - 1) / 2) <= tolerance * self.width
                and abs(self.cy - (self.height - 1) / 2) <= tolerance * self.height)

    def same_aspect(self, width: int, height: int, tolerance: float = 0.01) -> bool:
        """True when ``width`` x ``height`` has the aspect ratio of these intrinsics."""
        return abs(width / height - self.width / self.height) <= tolerance * self.width / self.height


@dataclass
class DepthPrediction:
    """One depth map from an estimator, at the input image size.

    ``depth`` is float32 (H, W); NaN marks pixels without a valid value. ``scale`` and ``shift`` map
    the values to metres (``metres = scale * value + shift``, disparity inverted first for
    AFFINE_DISPARITY) when known; they are (1, 0) for METRIC maps.
    """

    depth: np.ndarray
    kind: DepthKind
    scale: float = 1.0
    shift: float = 0.0
    steps: int = 0
    warm_start: str = ""
    warm: bool = False
    uncertainty: Optional[np.ndarray] = None
    extras: dict = field(default_factory=dict)

    def with_depth(self, depth: np.ndarray) -> "DepthPrediction":
        """Copy with another depth array (e.g. resized)."""
        return replace(self, depth=depth)


@dataclass
class Frame:
    """One camera frame as the estimators see it (no ROS types).

    ``rgb``: uint8 (H, W, 3). ``stamp``: seconds. ``pose_map_camera``: 4x4 optical-frame-to-map
    transform when known. ``gt_depth``: float32 metres (H, W), only for the oracle and the labeller.
    ``input_gap``: the largest stamp step between consecutive input images since the previous frame the
    estimator saw (images dropped in between count), None when unknown; on the stamps' clock like ``stamp``.
    """

    rgb: np.ndarray
    stamp: float
    frame_id: str = ""
    intrinsics: Optional[Intrinsics] = None
    pose_map_camera: Optional[np.ndarray] = None
    gt_depth: Optional[np.ndarray] = None
    sequence: int = 0
    input_gap: Optional[float] = None
