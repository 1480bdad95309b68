"""The oracle: returns the simulator's ground truth (tests, and the labeller's upper bound)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_ms.core.config import from_dict
from depth_ms.core.types import DepthKind, DepthPrediction, Frame

from .base import EstimatorError


@dataclass
class OracleOptions:
    """A known distortion turns the oracle into a model of known error (labeller tests)."""

    scale: float = 1.0  # prediction = scale * gt + shift
    shift: float = 0.0


class OracleEstimator:
    """Metric depth equal to ``Frame.gt_depth`` (optionally distorted by a known affine map)."""

    name = "oracle"
    kind = DepthKind.METRIC
    needs_ground_truth = True

    def __init__(self, options: OracleOptions | None = None) -> None:
        self.options = options or OracleOptions()

    def predict(self, frame: Frame) -> DepthPrediction:
        if frame.gt_depth is None:
            raise EstimatorError("the oracle needs ground-truth depth with every frame (none was paired)")
        if frame.gt_depth.shape != frame.rgb.shape[:2]:
            raise EstimatorError(f"ground truth {frame.gt_depth.shape} and image {frame.rgb.shape[:2]} "
                                 f"differ in size")
        depth = frame.gt_depth.astype(np.float32) * self.options.scale + self.options.shift  # (H, W)
        return DepthPrediction(depth=depth, kind=DepthKind.METRIC)

    def reset(self) -> None:
        """Stateless."""

    def warm_up(self, width: int, height: int) -> float:
        return 0.0


def create(options: dict, device: str = "cpu", mode: str = "pynative") -> OracleEstimator:
    """Registry factory (numpy only: device and mode do not apply)."""
    return OracleEstimator(from_dict(OracleOptions, options, "estimator"))
