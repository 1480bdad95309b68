"""The oracle: returns the simulator's ground truth (tests, and the labeller's upper bound)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_ms.core.config import from_dict
from depth_ms.core.types import DepthKind, DepthPrediction, Frame

from .base import EstimatorError


@dataclass
class OracleOptions:
    """A known distortion turns the oracle into a model of known error (labeller and metric-scale tests)."""

    kind: str = "metric"  # metric | affine_depth: scale * gt + shift | affine_disparity: scale / gt + shift
    scale: float = 1.0
    shift: float = 0.0


KINDS = {"metric": DepthKind.METRIC, "affine_depth": DepthKind.AFFINE_DEPTH,
         "affine_disparity": DepthKind.AFFINE_DISPARITY}


class OracleEstimator:
    """Depth equal to ``Frame.gt_depth``, optionally distorted by a known affine map in depth or disparity."""

    name = "oracle"
    needs_ground_truth = True

    def __init__(self, options: OracleOptions | None = None) -> None:
        self.options = options or OracleOptions()
        if self.options.kind not in KINDS:
            raise EstimatorError(f"oracle kind must be one of {', '.join(KINDS)}, got '{self.options.kind}'")
        self.kind = KINDS[self.options.kind]

    def predict(self, frame: Frame) -> DepthPrediction:
        if frame.gt_depth is None:
            raise EstimatorError("the oracle needs ground-truth depth with every frame (none was paired)")
        if frame.gt_depth.shape != frame.rgb.shape[:2]:
            raise EstimatorError(f"ground truth {frame.gt_depth.shape} and image {frame.rgb.shape[:2]} "
                                 f"differ in size")
        gt = frame.gt_depth.astype(np.float32)  # (H, W) metres, NaN invalid
        if self.kind == DepthKind.AFFINE_DISPARITY:
            with np.errstate(divide="ignore"):
                gt = 1.0 / gt
        depth = gt * np.float32(self.options.scale) + np.float32(self.options.shift)  # (H, W)
        return DepthPrediction(depth=depth, kind=self.kind)

    def reset(self) -> None:
        """Stateless."""

    def warm_up(self, width: int, height: int) -> float:
        return 0.0


def create(options: dict, device: str = "cpu", mode: str = "pynative") -> OracleEstimator:
    """Registry factory (numpy only: device and mode do not apply)."""
    return OracleEstimator(from_dict(OracleOptions, options, "estimator"))
