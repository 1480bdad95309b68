"""Training samples: RGB + metric ground truth, checked, stored small, counted when broken.

Every source (bags through :mod:`depth_ms.ros.train`, the labeller's dataset export, tests) goes through
:meth:`SampleSet.add`, which rejects broken samples with a reason and keeps count instead of failing.
Samples are stored at ``store_long_side`` pixels on their longer side (RGB by area averaging, depth by
nearest neighbour so no depth is invented across edges), which keeps thousands of frames in memory.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import cv2
import numpy as np

from depth_ms.evaluation.labels import MM_PER_M


@dataclass
class Sample:
    """``rgb`` uint8 (H, W, 3); ``depth`` float32 (H, W) metres, NaN where there is no ground truth."""

    rgb: np.ndarray
    depth: np.ndarray
    sequence: str = ""
    index: int = 0


def problem_of(rgb: Optional[np.ndarray], depth: Optional[np.ndarray], min_depth: float, max_depth: float,
               min_valid: float) -> Optional[tuple[str, str]]:
    """(reason, detail) when (``rgb``, ``depth``) cannot be trained on, None when it can."""
    if rgb is None or depth is None:
        return "missing RGB or ground truth", ""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        return "bad RGB", f"not uint8 (H, W, 3): {rgb.dtype} {rgb.shape}"
    if depth.ndim != 2 or depth.shape != rgb.shape[:2]:
        return "size mismatch", f"RGB {rgb.shape[1]}x{rgb.shape[0]}, ground truth {depth.shape[::-1]}"
    if min(depth.shape) < 8:
        return "image too small", f"{depth.shape[1]}x{depth.shape[0]}"
    with np.errstate(invalid="ignore"):
        valid = np.count_nonzero((depth > min_depth) & (depth < max_depth))
    if valid == 0:
        return "empty or NaN ground truth", ""
    if valid < min_valid * depth.size:
        return "too little valid ground truth", f"{valid / depth.size:.1%} < {min_valid:.0%}"
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
            self.skipped[problem[0]] += 1
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
    meta_path, index_path = folder / "meta.json", folder / "index.csv"
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder}: not a dataset export (no index.csv)")
    scale = json.loads(meta_path.read_text()).get("depth_scale", 1.0 / MM_PER_M) if meta_path.is_file() \
        else 1.0 / MM_PER_M
    with index_path.open(newline="") as stream:
        for row in csv.DictReader(stream):
            bgr = cv2.imread(str(folder / row["rgb"]), cv2.IMREAD_COLOR)
            raw = cv2.imread(str(folder / row["depth"]), cv2.IMREAD_UNCHANGED)
            if bgr is None or raw is None:
                into.skip("unreadable image file")
                continue
            depth = raw.astype(np.float32) * np.float32(scale)  # (H, W) metres
            depth[raw == 0] = np.nan
            into.add(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), depth, f"{folder.name}/{row['sequence']}",
                     int(row["index"]))
    return into


def add_all(samples: Iterable[tuple], into: SampleSet) -> SampleSet:
    """Add (rgb, depth, sequence, index) tuples."""
    for rgb, depth, sequence, index in samples:
        into.add(rgb, depth, sequence, index)
    return into


__all__ = ["Sample", "SampleSet", "problem_of", "read_dataset_folder", "shrink", "add_all"]
