"""What the labeller consumes: one record per frame, from any source (bags, tests, other tools)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Optional, Protocol

import numpy as np

from depth_ms.core.types import DepthPrediction, Frame, Intrinsics
from depth_ms.metric.scaler import RangeReading


@dataclass(frozen=True)
class Skip:
    """Why a frame is not scored: ``reason`` is a short key counted in the summary, ``detail`` says more."""

    reason: str
    detail: str


class SkipFrame(Exception):
    """Raised while scoring a frame that cannot be scored; carries a :class:`Skip`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.skip = Skip(reason, detail)


@dataclass
class FrameRecord:
    """One frame of one sequence with whatever was paired with it.

    ``gt`` float32 (H, W) metres, NaN = no return; ``rgb`` uint8 (H, W, 3); ``pose`` 4x4 T_map_optical;
    ``rangefinder`` the paired downward range reading with the sensor's pose (metric scale source rangefinder).
    ``skip`` is set by the source when the frame cannot be scored (e.g. no GT within the tolerance);
    such records still flow through (a model in mode (b) must see every RGB frame, and they are counted).
    """

    sequence: str
    index: int
    stamp: float
    gt: Optional[np.ndarray] = None
    prediction: Optional[DepthPrediction] = None
    rgb: Optional[np.ndarray] = None
    intrinsics: Optional[Intrinsics] = None
    pose: Optional[np.ndarray] = None
    frame_id: str = ""
    model: str = ""
    model_ms: float = math.nan
    skip: Optional[Skip] = None
    rangefinder: Optional[RangeReading] = None

    def to_frame(self) -> Frame:
        """The estimators' view of this record (needs ``rgb``)."""
        return Frame(rgb=self.rgb, stamp=self.stamp, frame_id=self.frame_id, intrinsics=self.intrinsics,
                     pose_map_camera=self.pose, gt_depth=self.gt, sequence=self.index)


class FrameSource(Protocol):
    """A replayable stream of records (the labeller may read it twice for per-sequence alignment).

    After each pass ``notes`` lists what went wrong reading (truncated bag, missing topic, ...) and
    ``counts`` holds integer counters worth reporting (e.g. unmatched messages per topic).
    """

    expected_frames: Optional[int]
    notes: list[str]
    counts: dict[str, int]

    def records(self) -> Iterator[FrameRecord]:
        ...


class SourceStage:
    """A FrameSource that transforms the records of ``base``; frame count and notes are the base's."""

    def __init__(self, base: FrameSource) -> None:
        self.base = base

    @property
    def expected_frames(self) -> Optional[int]:
        return self.base.expected_frames

    @property
    def notes(self) -> list[str]:
        return self.base.notes


@dataclass
class ListSource:
    """A FrameSource over records already in memory (tests, small tools)."""

    items: list[FrameRecord]
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def expected_frames(self) -> int:
        return len(self.items)

    def records(self) -> Iterator[FrameRecord]:
        return iter(self.items)
