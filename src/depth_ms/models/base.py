"""The one protocol every depth estimator implements (ROS-free)."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from depth_ms.core.types import DepthKind, DepthPrediction, Frame


class EstimatorError(RuntimeError):
    """An estimator cannot be built or cannot process a frame; the message says why."""


@runtime_checkable
class DepthEstimator(Protocol):
    """Monocular depth from one frame at a time.

    ``predict`` gets frames in stream order and returns depth at the input size; a stateful
    estimator (streaming Marigold) keeps what it needs between calls and drops it in ``reset``
    (called on time jumps, size changes and scene cuts).
    """

    name: str
    kind: DepthKind
    needs_ground_truth: bool  # True only for the oracle: the adapter must fill Frame.gt_depth

    def predict(self, frame: Frame) -> DepthPrediction:
        ...

    def reset(self) -> None:
        ...

    def warm_up(self, width: int, height: int) -> float:
        """Run once at start-up (compilation); returns the seconds it took."""
        ...
