"""Training samples: RGB + metric ground truth, checked, stored small, counted when broken.

Every source (bags through :mod:`depth_ms.ros.train`, the labeller's dataset export, tests) goes through
:meth:`SampleSet.add`, which rejects broken samples with a reason and keeps count instead of failing.
Samples are stored at ``store_long_side`` pixels on their longer side (RGB by area averaging, depth by
nearest neighbour so no depth is invented across edges), which keeps thousands of frames in memory.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from depth_ms.evaluation.labels import png16_to_depth


@dataclass
class Sample:
    """``rgb`` uint8 (H, W, 3); ``depth`` float32 (H, W) metres, NaN where there is no ground truth."""

    rgb: np.ndarray
    depth: np.ndarray
    sequence: str = ""
    index: int = 0


def problem_of(rgb: Optional[np.ndarray], depth: Optional[np.ndarray], min_depth: float, max_depth: float,
               min_valid: float) -> Optional[str]:
    """Why (``rgb``, ``depth``) cannot be trained on (the key it is counted under), None when it can."""
    if rgb is None or depth is None:
        return "missing RGB or ground truth"
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        return "bad RGB"
    if depth.ndim != 2 or depth.shape != rgb.shape[:2]:
        return "size mismatch"
    if min(depth.shape) < 8:
        return "image too small"
    with np.errstate(invalid="ignore"):
        valid = np.count_nonzero((depth > min_depth) & (depth < max_depth))
    if valid == 0:
        return "empty or NaN ground truth"
    if valid < min_valid * depth.size:
        return "too little valid ground truth"
    return None


def shrink(sample: Sample, long_side: int) -> Sample:
    """``sample`` with its longer side at most ``long_side`` pixels."""
    height, width = sample.depth.shape
    factor = long_side / max(height, width)
    if factor >= 1:
        return sample
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    rgb = cv2.resize(sample.rgb, size, interpolation=cv2.INTER_AREA)  # (h, w, 3)
    depth = cv2.resize(sample.depth, size, interpolation=cv2.INTER_NEAREST)  # (h, w)
    return Sample(rgb, depth, sample.sequence, sample.index)


class SampleSet:
    """Checked samples in memory, with the count of rejected ones per reason."""

    def __init__(self, store_long_side: int = 320, min_depth: float = 0.2, max_depth: float = 65.535,
                 min_valid: float = 0.05) -> None:
        self.store_long_side = store_long_side
        self.min_depth, self.max_depth, self.min_valid = min_depth, max_depth, min_valid
        self.samples: list[Sample] = []
        self.skipped: Counter = Counter()

    def __len__(self) -> int:
        return len(self.samples)

    def add(self, rgb: Optional[np.ndarray], depth: Optional[np.ndarray], sequence: str = "", index: int = 0) -> bool:
        """Keep the sample if it is usable (returns True), else count why not."""
        problem = problem_of(rgb, depth, self.min_depth, self.max_depth, self.min_valid)
        if problem is not None:
            self.skipped[problem] += 1
            return False
        depth = depth.astype(np.float32, copy=True)
        with np.errstate(invalid="ignore"):
            depth[~((depth > self.min_depth) & (depth < self.max_depth))] = np.nan
        self.samples.append(shrink(Sample(np.ascontiguousarray(rgb), depth, sequence, index),
                                   self.store_long_side))
        return True

    def skip(self, reason: str, count: int = 1) -> None:
        """Count samples a source could not even read (unreadable message, truncated bag...)."""
        self.skipped[reason] += count

    def sequences(self) -> list[str]:
        return sorted({s.sequence for s in self.samples})


def read_dataset_folder(folder: Path, into: SampleSet) -> SampleSet:
    """Add every pair of a labeller dataset export (``index.csv``, RGB PNG, 16-bit mm depth PNG)."""
    folder = Path(folder)
    index_path = folder / "index.csv"
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder}: not a dataset export (no index.csv)")
    with index_path.open(newline="") as stream:
        for row in csv.DictReader(stream):
            bgr = cv2.imread(str(folder / row["rgb"]), cv2.IMREAD_COLOR)
            raw = cv2.imread(str(folder / row["depth"]), cv2.IMREAD_UNCHANGED)
            if bgr is None or raw is None:
                into.skip("unreadable image file")
                continue
            into.add(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), png16_to_depth(raw), f"{folder.name}/{row['sequence']}",
                     int(row["index"]))
    return into


__all__ = ["Sample", "SampleSet", "problem_of", "read_dataset_folder", "shrink"]
