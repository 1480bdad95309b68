"""Dataset export: RGB + ground-truth depth pairs with an index, for training.

Layout (paths in the index are relative to the dataset folder)::

    dataset/meta.json        format description (depth_scale, invalid value, ranges, sources)
    dataset/index.csv        one row per pair: rgb, depth, sequence, index, stamp, width, height,
                             fx, fy, cx, cy, tx, ty, tz, qx, qy, qz, qw (T_map_optical; empty if unknown)
    dataset/rgb/<sequence>_<index>.png    8-bit RGB
    dataset/depth/<sequence>_<index>.png  16-bit millimetres, 0 = no ground truth
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable, Optional

import cv2
from scipy.spatial.transform import Rotation

from .labels import MM_PER_M, PNG16_MAX_M, frame_stem, write_depth
from .records import FrameRecord
from .scoring import ScoredFrame

INDEX_COLUMNS = ("rgb", "depth", "sequence", "index", "stamp", "width", "height", "fx", "fy", "cx", "cy",
                 "tx", "ty", "tz", "qx", "qy", "qz", "qw")


class DatasetExporter:
    """Writes pairs as they come (a sink for scored frames, or fed records directly)."""

    def __init__(self, folder: Path, sources: Optional[list[str]] = None) -> None:
        self.folder = Path(folder)
        (self.folder / "rgb").mkdir(parents=True, exist_ok=True)
        (self.folder / "depth").mkdir(parents=True, exist_ok=True)
        meta = {"format": "depth_ms dataset v1", "rgb": "8-bit RGB PNG", "depth": "16-bit PNG, millimetres",
                "depth_scale": 1.0 / MM_PER_M, "invalid_depth": 0, "max_representable_depth_m": PNG16_MAX_M,
                "intrinsics": "pixels, of the depth image", "pose": "T_map_optical (REP 103 optical frame in map)",
                "index": "index.csv", "sources": sources or []}
        (self.folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        self._file = (self.folder / "index.csv").open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(INDEX_COLUMNS)
        self.written = 0
        self.skipped = 0

    def add_record(self, record: FrameRecord) -> bool:
        """Export one record if it has RGB and ground truth of the same size; returns whether it did."""
        if record.rgb is None or record.gt is None or record.rgb.shape[:2] != record.gt.shape:
            self.skipped += 1
            return False
        stem = frame_stem(record.sequence, record.index)
        if not cv2.imwrite(str(self.folder / "rgb" / f"{stem}.png"), cv2.cvtColor(record.rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {self.folder / 'rgb' / stem}.png")
        write_depth(self.folder / "depth" / stem, record.gt, npy=False)
        height, width = record.gt.shape
        k = record.intrinsics
        if k is not None and k.size != (width, height) and k.same_aspect(width, height):
            k = k.scaled_to(width, height)
        intrinsics = [k.fx, k.fy, k.cx, k.cy] if k is not None and k.size == (width, height) else [""] * 4
        pose = [""] * 7
        if record.pose is not None:
            pose = list(record.pose[:3, 3]) + list(Rotation.from_matrix(record.pose[:3, :3]).as_quat())
        self._writer.writerow([f"rgb/{stem}.png", f"depth/{stem}.png", record.sequence, record.index,
                               f"{record.stamp:.6f}", width, height, *intrinsics, *pose])
        self.written += 1
        return True

    def add(self, scored: ScoredFrame) -> None:
        self.add_record(scored.record)

    def close(self) -> None:
        self._file.close()


def export_dataset(records: Iterable[FrameRecord], folder: Path, sources: Optional[list[str]] = None
                   ) -> DatasetExporter:
    """Export every record with RGB and ground truth (no scoring); returns the closed exporter (counts)."""
    exporter = DatasetExporter(folder, sources)
    try:
        for record in records:
            exporter.add_record(record)
    finally:
        exporter.close()
    return exporter
