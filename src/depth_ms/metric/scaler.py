"""One call per frame: fit the relative map to what the drone knows, filter, and say if the frame is metric."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_ms.core.affine import to_metres  # noqa: F401 - re-exported
from depth_ms.core.types import DepthKind, Intrinsics

from .config import ScaleConfig
from .filter import FITTED, HOLDING, LOST, ScaleFilter
from .fit import AffineFit, robust_affine_fit, weighted_least_squares
from .ground import ground_plane_depth, project_point, rangefinder_ground_point

MIN_RANGEFINDER_DOWN = 0.5  # cos(60 deg): a Range whose x axis is farther from straight down is not used


@dataclass
class RangeReading:
    """A downward rangefinder reading with the sensor's pose at its stamp."""

    distance: float  # metres along the sensor's x axis
    T_map_sensor: np.ndarray  # 4x4


@dataclass
class ScaleContext:
    """What is known about one frame besides its image (any part may be missing)."""

    stamp: float
    intrinsics: Optional[Intrinsics] = None  # of the map being scaled
    T_map_optical: Optional[np.ndarray] = None  # 4x4 camera pose at the image stamp (None: missing or stale)
    rangefinder: Optional[RangeReading] = None  # fresh and in range, else None
    gt_depth: Optional[np.ndarray] = None  # (H, W) metres, source ground_truth only


@dataclass
class ScaleEstimate:
    """How to read one frame's map in metres: ``metres = scale * value + shift`` (inverted for disparity)."""

    source: str
    metric: bool
    scale: float = math.nan
    shift: float = math.nan
    inlier_fraction: float = math.nan  # of this frame's fit; NaN when none ran or none succeeded
    state: str = FITTED  # fitted | holding | lost (see depth_ms.metric.filter)
    reason: str = ""  # why this frame has no fit of its own, when it has none
    change: str = ""  # a log line when the state changed with this frame, else ""


class MetricScaler:
    """Turns relative maps of one estimator into metric ones, frame after frame."""

    def __init__(self, config: ScaleConfig, kind: DepthKind, seed: int = 0) -> None:
        self.config = config
        self.kind = DepthKind(kind)
        self.filter = ScaleFilter(config.filter)
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._state = ""
        self._last_pose: Optional[tuple[float, np.ndarray]] = None  # (stamp, T_map_optical) of the last posed frame

    def reset(self) -> None:
        """Forget the filtered scale (call on the events that reset the estimator)."""
        self.filter.reset()
        self._rng = np.random.default_rng(self._seed)
        self._last_pose = None

    def update(self, values: np.ndarray, context: ScaleContext) -> ScaleEstimate:
        """The estimate for ``values`` (H, W), the model's map (``context.intrinsics`` of its size, or rescaled to it)."""
        estimate = self._estimate(values, context)
        if estimate.state != self._state:
            estimate.change = self._describe(estimate)
            self._state = estimate.state
        return estimate

    def _estimate(self, values: np.ndarray, context: ScaleContext) -> ScaleEstimate:
        source = self.config.source
        if self.kind == DepthKind.METRIC:
            return ScaleEstimate("model", True, 1.0, 0.0)
        if source == "none":
            return ScaleEstimate(source, False, state=LOST, reason="scale.source is none")
        if source == "fixed":
            return ScaleEstimate(source, True, self.config.scale, self.config.shift)
        if source == "ground_truth":
            return self._ground_truth(values, context.gt_depth)
        fit, reason = self._ground_fit(values, context)
        filtered = self.filter.update(fit, context.stamp)
        if fit is not None and filtered.gated:
            reason = "fit rejected as an outlier of the filtered scale"
        if filtered.state == LOST and not reason:
            reason = f"no valid fit for more than {self.config.filter.hold:g} s"
        return ScaleEstimate(source, filtered.state != LOST, filtered.scale, filtered.shift,
                             fit.inlier_fraction if fit is not None else math.nan, filtered.state,
                             "" if filtered.state == FITTED else reason)

    def _ground_truth(self, values: np.ndarray, gt: Optional[np.ndarray]) -> ScaleEstimate:
        """Per-frame least squares in the model's space against the simulator's depth (the upper bound)."""
        if gt is None or gt.shape != values.shape:
            return ScaleEstimate("ground_truth", False, state=LOST, reason="no ground truth of the image's size")
        usable = np.isfinite(values) & np.isfinite(gt) & (gt > 0)
        if self.kind == DepthKind.AFFINE_DISPARITY:
            usable &= values > 0
        x = values[usable].astype(np.float64)
        y = gt[usable].astype(np.float64)
        if self.kind == DepthKind.AFFINE_DISPARITY:
            y = 1.0 / y
        if x.size < 2:
            return ScaleEstimate("ground_truth", False, state=LOST, reason="no valid ground-truth pixels")
        scale, shift = weighted_least_squares(x, y, np.ones_like(x))
        if not (math.isfinite(scale) and scale > 0):
            return ScaleEstimate("ground_truth", False, state=LOST, reason="degenerate least-squares fit")
        return ScaleEstimate("ground_truth", True, scale, shift, 1.0)

    def _ground_fit(self, values: np.ndarray, context: ScaleContext) -> tuple[Optional[AffineFit], str]:
        """This frame's fit to the ground (and the rangefinder's ground point), or (None, why not)."""
        config = self.config
        if context.intrinsics is None:
            return None, "no camera_info"
        if context.T_map_optical is None:
            return None, "no fresh camera pose"
        jump = self._pose_jump(context.stamp, context.T_map_optical)
        if jump:
            return None, jump
        intrinsics, (height, width) = context.intrinsics, values.shape
        if intrinsics.size != (width, height):
            if not intrinsics.same_aspect(width, height):
                return None, f"camera_info is {intrinsics.width}x{intrinsics.height}, the map {width}x{height}"
            intrinsics = intrinsics.scaled_to(width, height)
        ground_height = config.ground_height
        reading = context.rangefinder
        if reading is not None and reading.T_map_sensor[2, 0] > -MIN_RANGEFINDER_DOWN:
            if config.uses_rangefinder:
                return None, "the rangefinder does not point down (its x axis is more than 60 deg from -z)"
            reading = None  # ground_plane: no anchor from a sensor looking elsewhere
        if config.uses_rangefinder:
            if reading is None:
                return None, "no fresh rangefinder reading in range"
            ground_height = float(rangefinder_ground_point(reading.distance, reading.T_map_sensor)[2])
        camera_height = float(context.T_map_optical[2, 3])
        if camera_height <= ground_height:
            return None, (f"the camera ({camera_height:.2f} m) is not above the ground ({ground_height:.2f} m): "
                          "check scale.ground_height and the pose frame")
        stride = config.fit.stride
        metres = ground_plane_depth(intrinsics, context.T_map_optical, ground_height,
                                    config.max_ground_distance, stride).ravel()  # (N,)
        sampled = values[::stride, ::stride].ravel()  # (N,)
        weights = None
        if reading is not None and config.rangefinder.anchor_weight > 0:
            anchor = project_point(rangefinder_ground_point(reading.distance, reading.T_map_sensor),
                                   intrinsics, context.T_map_optical)
            if anchor is not None:
                column, row, depth = anchor
                ground = np.isfinite(metres)
                share = config.rangefinder.anchor_weight
                weights = np.append(np.ones_like(metres), share / (1 - share) * max(int(ground.sum()), 1))
                metres = np.append(metres, np.float32(depth))
                sampled = np.append(sampled, values[row, column])
        if not np.isfinite(metres).any():
            return None, "no ground in view"
        fit = robust_affine_fit(sampled, metres, self.kind, config.fit, self._rng, weights,
                                prior_shift=self.filter.shift or 0.0)
        return fit, "" if fit is not None else "ground pixels do not fit one scale and shift"

    def _pose_jump(self, stamp: float, pose: np.ndarray) -> str:
        """Why the camera pose is not plausible motion since the previous posed frame ("" when it is)."""
        last, self._last_pose = self._last_pose, (stamp, pose)
        if last is None or stamp <= last[0]:
            return ""
        elapsed, previous = stamp - last[0], last[1]
        moved = float(np.linalg.norm(pose[:3, 3] - previous[:3, 3]))
        cos_turn = (np.trace(previous[:3, :3].T @ pose[:3, :3]) - 1.0) / 2.0
        turned = math.degrees(math.acos(min(1.0, max(-1.0, float(cos_turn)))))
        if moved > self.config.max_camera_speed * elapsed or turned > self.config.max_camera_turn_rate * elapsed:
            return f"camera pose jumped {moved:.1f} m and {turned:.0f} deg in {elapsed:.2f} s"
        return ""

    def _describe(self, estimate: ScaleEstimate) -> str:
        if estimate.state == FITTED:
            inliers = "" if math.isnan(estimate.inlier_fraction) else f", inliers {estimate.inlier_fraction:.0%}"
            return (f"metric scale from {estimate.source}: scale {estimate.scale:.4g}, "
                    f"shift {estimate.shift:.4g}{inliers}")
        if estimate.state == HOLDING:
            return f"holding the last metric scale ({estimate.reason})"
        return f"no metric scale ({estimate.reason}): metric topics stop"
