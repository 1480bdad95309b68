"""Per-frame label files: ground truth and aligned prediction as 16-bit PNG (mm) and .npy (metres)."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps

from .scoring import ScoredFrame

MM_PER_M = 1000.0
PNG16_MAX_M = 65.535  # uint16 millimetres: farther (and invalid) pixels are written as 0


def frame_stem(sequence: str, index: int) -> str:
    """File-name stem of a frame: ``<sequence>_<index:06d>`` with unsafe characters replaced."""
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', sequence)}_{index:06d}"


def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """(H, W) metres -> uint16 millimetres; NaN, <= 0 and > 65.535 m become 0 (invalid)."""
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0) & (depth <= PNG16_MAX_M)
    millimetres = np.zeros(depth.shape, dtype=np.uint16)  # (H, W)
    millimetres[valid] = np.rint(depth[valid] * MM_PER_M).astype(np.uint16)
    return millimetres


def png16_to_depth(millimetres: np.ndarray) -> np.ndarray:
    """Inverse of :func:`depth_to_png16`: float32 metres with NaN where 0."""
    depth = millimetres.astype(np.float32) / np.float32(MM_PER_M)
    depth[millimetres == 0] = np.nan
    return depth


def write_depth(path_stem: Path, depth: np.ndarray, npy: bool = True) -> None:
    """``<stem>.png`` (16-bit mm) and optionally ``<stem>.npy`` (float32 metres, NaN invalid)."""
    if not cv2.imwrite(str(path_stem.with_suffix(".png")), depth_to_png16(depth)):
        raise OSError(f"cannot write {path_stem.with_suffix('.png')}")
    if npy:
        np.save(path_stem.with_suffix(".npy"), depth.astype(np.float32, copy=False))


_ERROR_LUT = (colormaps["RdBu_r"](np.linspace(0.0, 1.0, 256))[:, 2::-1] * 255).astype(np.uint8)  # (256, 3) BGR


def error_to_bgr(signed_rel_error: np.ndarray, error_range: float) -> np.ndarray:
    """(H, W) signed relative error -> (H, W, 3) uint8 BGR: blue too near, white exact, red too far, black n/a."""
    scaled = (np.clip(signed_rel_error, -error_range, error_range) / error_range + 1.0) * 127.5  # (H, W)
    index = np.nan_to_num(scaled, nan=127.5).astype(np.uint8)
    bgr = _ERROR_LUT[index]  # (H, W, 3)
    bgr[~np.isfinite(signed_rel_error)] = 0
    return bgr


class LabelWriter:
    """Sink writing ``labels/gt`` and ``labels/pred`` files for every scored frame."""

    def __init__(self, folder: Path) -> None:
        self.gt_dir = Path(folder) / "gt"
        self.pred_dir = Path(folder) / "pred"
        self.gt_dir.mkdir(parents=True, exist_ok=True)
        self.pred_dir.mkdir(parents=True, exist_ok=True)
        self.written = 0

    def add(self, scored: ScoredFrame) -> None:
        stem = frame_stem(scored.record.sequence, scored.record.index)
        write_depth(self.gt_dir / stem, scored.record.gt)
        write_depth(self.pred_dir / stem, scored.aligned)
        self.written += 1

    def close(self) -> None:
        """Nothing buffered."""
