"""Report figures (matplotlib, Agg backend, no display): metrics over time, error histogram, error vs
distance, sample frames. Also the constant-memory collector of sample frames."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from depth_ms.core.image_ops import resize_depth, resize_rgb  # noqa: E402

from .scoring import BIN_NAMES, ScoredFrame  # noqa: E402

SAMPLE_WIDTH = 320  # pixels: sample frames are kept at most this wide
DPI = 100


@dataclass
class Sample:
    """A downscaled frame for the sample figure."""

    title: str
    rgb: Optional[np.ndarray]  # (h, w, 3) uint8
    gt: np.ndarray  # (h, w) metres
    pred: np.ndarray  # (h, w) metres
    error: np.ndarray  # (h, w) signed relative error


def _sample(scored: ScoredFrame, label: str, start: float) -> Sample:
    height, width = scored.aligned.shape
    w = min(width, SAMPLE_WIDTH)
    h = max(1, round(height * w / width))
    record = scored.record
    rgb = resize_rgb(record.rgb, w, h) if record.rgb is not None else None
    m = scored.metrics
    title = (f"{label}{record.sequence} #{record.index}  t=+{record.stamp - start:.2f} s  AbsRel {m['abs_rel']:.3f}  "
             f"d1 {m['delta1']:.3f}")
    return Sample(title, rgb, _shrink(record.gt, w, h), _shrink(scored.aligned, w, h),
                  _shrink(scored.signed_rel_error, w, h))


def _shrink(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    return resize_depth(depth.astype(np.float32), width, height) if depth.shape != (height, width) else depth.copy()


class SampleCollector:
    """Keeps up to ``capacity`` evenly spaced scored frames (stride doubles when full) and the worst one."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.stride = 1
        self.seen = 0
        self.samples: list[tuple[int, Sample]] = []
        self.worst: Optional[tuple[float, Sample]] = None
        self._starts: dict[str, float] = {}  # first stamp of every sequence

    def add(self, scored: ScoredFrame) -> None:
        if self.capacity <= 0:
            return
        position = self.seen
        self.seen += 1
        start = self._starts.setdefault(scored.record.sequence, scored.record.stamp)
        if position % self.stride == 0:
            self.samples.append((position, _sample(scored, "", start)))
            if len(self.samples) > self.capacity:
                self.stride *= 2
                self.samples = [(p, s) for p, s in self.samples if p % self.stride == 0]
        abs_rel = scored.metrics["abs_rel"]
        if math.isfinite(abs_rel) and (self.worst is None or abs_rel > self.worst[0]):
            self.worst = (abs_rel, _sample(scored, "worst: ", start))

    def close(self) -> None:
        """Nothing to flush."""

    def figures(self) -> list[Sample]:
        chosen = [sample for _, sample in self.samples]
        if self.worst is not None:
            chosen.append(self.worst[1])
        return chosen


def _time_axis(columns: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Seconds since each sequence's first frame, and the sequence of every row."""
    sequences = list(columns["sequence"])
    stamps = columns["stamp"].astype(float)
    start: dict[str, float] = {}
    for sequence, stamp in zip(sequences, stamps):
        start.setdefault(sequence, stamp)
    return np.array([stamp - start[s] for s, stamp in zip(sequences, stamps)]), sequences


def plot_metrics_over_time(columns: dict[str, np.ndarray], path: Path) -> Path:
    """AbsRel, delta1, RMSE and TAE / flicker per frame against time, one line per sequence."""
    times, sequences = _time_axis(columns)
    panels = [("abs_rel", "AbsRel"), ("delta1", "delta1"), ("rmse", "RMSE (m)"), ("tae", "TAE / flicker (%)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 8.5), sharex=True)
    names = list(dict.fromkeys(sequences))
    for ax, (key, label) in zip(axes, panels):
        for name in names:
            rows = np.array([s == name for s in sequences])
            ax.plot(times[rows], columns[key][rows], ".-", ms=3, lw=1, label=name)
            if key == "tae":
                ax.plot(times[rows], columns["flicker"][rows], "x:", ms=3, lw=1, label=f"{name} flicker")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if key != "delta1":
            ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("time since the first frame of the sequence (s)")
    fig.suptitle("Per-frame metrics over time")
    return _save(fig, path)


def plot_error_histogram(histogram: dict, path: Path) -> Path:
    """Signed relative error histogram of all scored pixels."""
    edges = np.array(histogram["edges"])
    counts = np.array(histogram["counts"], dtype=float)
    total = counts.sum()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.stairs(counts / total * 100 if total else counts, edges, fill=True, alpha=0.6)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("(prediction - ground truth) / ground truth   (edge bins include everything beyond)")
    ax.set_ylabel("pixels (%)")
    ax.set_title("Error histogram (all scored pixels)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_error_vs_distance(curve: dict, bin_ranges: list, path: Path) -> Path:
    """AbsRel and RMSE against ground-truth distance (top) and the pixel share per distance (bottom)."""
    edges = np.array(curve["edges_m"])
    centres = (edges[:-1] + edges[1:]) / 2
    abs_rel = np.array([np.nan if v is None else v for v in curve["abs_rel"]])
    rmse = np.array([np.nan if v is None else v for v in curve["rmse"]])
    pixels = np.array(curve["pixels"], dtype=float)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(2, 1))
    for ax in (top, bottom):
        for (low, high), shade in zip(bin_ranges, (0.05, 0.12, 0.05)):
            ax.axvspan(low, high, color="grey", alpha=shade, lw=0)
        ax.grid(alpha=0.3)
    for (low, high), name in zip(bin_ranges, BIN_NAMES):
        bottom.text((low + high) / 2, 0.95, name, transform=bottom.get_xaxis_transform(), ha="center", va="top")
    top.plot(centres, abs_rel, "o-", ms=3, color="tab:blue", label="AbsRel (left)")
    top.set_ylabel("AbsRel", color="tab:blue")
    right = top.twinx()
    right.plot(centres, rmse, "s-", ms=3, color="tab:red", label="RMSE (right)")
    right.set_ylabel("RMSE (m)", color="tab:red")
    top.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    top.legend(handles=top.get_lines() + right.get_lines(), loc="upper left", fontsize=8)
    top.set_title("Error vs ground-truth distance (all scored pixels)")
    bottom.bar(centres, pixels / max(pixels.sum(), 1.0) * 100, width=edges[1] - edges[0], color="grey", alpha=0.6)
    bottom.set_ylabel("pixels (%)")
    bottom.set_xlabel("ground-truth depth (m)")
    return _save(fig, path)


def plot_samples(samples: list[Sample], path: Path, error_range: float) -> Optional[Path]:
    """Rows of RGB | ground truth | prediction | signed relative error map."""
    if not samples:
        return None
    height, width = samples[0].gt.shape
    fig, axes = plt.subplots(len(samples), 4, figsize=(14, 3.0 * len(samples) * height / width + 0.6),
                             squeeze=False)
    for row, sample in zip(axes, samples):
        finite = sample.gt[np.isfinite(sample.gt)]
        low, high = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        if sample.rgb is not None:
            row[0].imshow(sample.rgb)
        else:
            row[0].text(0.5, 0.5, "no RGB", ha="center", va="center")
        depth_map = plt.get_cmap("turbo_r").with_extremes(bad="black")
        row[1].imshow(sample.gt, cmap=depth_map, vmin=low, vmax=high)
        image = row[2].imshow(sample.pred, cmap=depth_map, vmin=low, vmax=high)
        fig.colorbar(image, ax=row[2], fraction=0.046, pad=0.02, label="m")
        error = row[3].imshow(sample.error, cmap=plt.get_cmap("RdBu_r").with_extremes(bad="black"),
                              vmin=-error_range, vmax=error_range)
        fig.colorbar(error, ax=row[3], fraction=0.046, pad=0.02, label="(p-g)/g")
        row[0].set_title(sample.title, fontsize=8, loc="left")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, label in zip(axes[0], ("RGB", "ground truth", "prediction (aligned)", "error (blue near, red far)")):
        ax.set_xlabel(label)
        ax.xaxis.set_label_position("top")
    fig.suptitle("Sample frames (black: no valid ground truth / prediction)")
    return _save(fig, path)


def plot_comparison(names: list[str], table: dict[str, list[Optional[float]]], curves: dict[str, tuple],
                    path: Path) -> Path:
    """Bars of the headline metrics per run, and AbsRel over time per run."""
    keys = [key for key in ("abs_rel", "delta1", "rmse", "silog", "tae", "flicker") if key in table]
    fig, axes = plt.subplots(2, len(keys), figsize=(3.0 * len(keys), 7), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, key in zip(axes[0], keys):
        values = [np.nan if v is None else v for v in table[key]]
        ax.bar(range(len(names)), values, color=[colours(i % 10) for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(key)
        ax.grid(axis="y", alpha=0.3)
    timeline = fig.add_subplot(2, 1, 2)
    for ax in axes[1]:
        ax.remove()
    for i, name in enumerate(names):
        if name in curves:
            times, values = curves[name]
            timeline.plot(times, values, ".-", ms=2, lw=1, color=colours(i % 10), label=name)
    timeline.set_xlabel("time since the first frame (s)")
    timeline.set_ylabel("AbsRel per frame")
    timeline.grid(alpha=0.3)
    timeline.legend(fontsize=8)
    fig.suptitle("Run comparison")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
