"""Running summary of a labelling run: means per sequence and overall, per distance bin, histograms.

Constant memory in the number of frames: only sums, counts and fixed-size histograms are kept.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .metrics import METRIC_NAMES, TERM_NAMES, metrics_from_sums
from .records import Skip
from .scoring import (BIN_NAMES, DISTANCE_CURVE_BINS, ERROR_HIST_BINS, ERROR_HIST_RANGE, ScoredFrame)

TEMPORAL_NAMES = ("tae", "flicker", "static_share")
EXTRA_NAMES = ("coverage", "scale", "shift", "model_ms")


class _Means:
    """Sums and counts per name; NaN values are left out."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, name: str, value: float) -> None:
        if value is not None and math.isfinite(value):
            self.sums[name] += value
            self.counts[name] += 1

    def mean(self, name: str) -> float:
        count = self.counts.get(name, 0)
        return self.sums[name] / count if count else math.nan


@dataclass
class _Group:
    """Everything summed for one sequence (or for all of them)."""

    records: int = 0
    scored: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    means: _Means = field(default_factory=_Means)
    bin_means: list[_Means] = field(default_factory=lambda: [_Means() for _ in BIN_NAMES])
    bin_pixels: np.ndarray = field(default_factory=lambda: np.zeros(len(BIN_NAMES)))
    error_hist: np.ndarray = field(default_factory=lambda: np.zeros(ERROR_HIST_BINS))
    distance_curve: np.ndarray = field(default_factory=lambda: np.zeros((DISTANCE_CURVE_BINS, 3)))
    worst: Optional[tuple[float, int, float]] = None  # (abs_rel, index, stamp)
    alignments: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # frames per alignment applied

    def add(self, scored: ScoredFrame) -> None:
        self.scored += 1
        self.alignments[scored.space] += 1
        for name in METRIC_NAMES:
            self.means.add(name, scored.metrics[name])
        for name in TEMPORAL_NAMES:
            self.means.add(name, getattr(scored, name))
        self.means.add("coverage", scored.coverage)
        self.means.add("scale", scored.scale)
        self.means.add("shift", scored.shift)
        self.means.add("model_ms", scored.record.model_ms)
        for means, sums in zip(self.bin_means, scored.bin_sums):
            if sums[0] > 0:
                for name, value in metrics_from_sums(sums).items():
                    means.add(name, value)
        self.bin_pixels += scored.bin_sums[:, TERM_NAMES.index("count")]
        self.error_hist += scored.error_hist
        self.distance_curve += scored.distance_curve
        abs_rel = scored.metrics["abs_rel"]
        if self.worst is None or abs_rel > self.worst[0]:
            self.worst = (abs_rel, scored.record.index, scored.record.stamp)

    def to_dict(self, bin_ranges: list[tuple[float, float]]) -> dict:
        bins = {}
        for name, means, pixels, bounds in zip(BIN_NAMES, self.bin_means, self.bin_pixels, bin_ranges):
            bins[name] = {"range_m": list(bounds), "pixels": int(pixels), "frames": means.counts.get("abs_rel", 0),
                          "metrics": {m: _num(means.mean(m)) for m in METRIC_NAMES}}
        return {
            "frames": self.records,
            "scored": self.scored,
            "skipped": dict(sorted(self.skipped.items())),
            "metrics": {m: _num(self.means.mean(m)) for m in METRIC_NAMES},
            "temporal": {"tae": _num(self.means.mean("tae")), "tae_pairs": self.means.counts.get("tae", 0),
                         "flicker": _num(self.means.mean("flicker")),
                         "flicker_pairs": self.means.counts.get("flicker", 0),
                         "static_share": _num(self.means.mean("static_share"))},
            "coverage": _num(self.means.mean("coverage")),
            "alignment_applied": dict(self.alignments),
            "alignment_mean": {"scale": _num(self.means.mean("scale")), "shift": _num(self.means.mean("shift"))},
            "model_ms_mean": _num(self.means.mean("model_ms")),
            "bins": bins,
            "worst_frame": None if self.worst is None else
            {"abs_rel": _num(self.worst[0]), "index": self.worst[1], "stamp": self.worst[2]},
        }


def _num(value: float) -> Optional[float]:
    """JSON-friendly float: NaN becomes null."""
    return None if value is None or not math.isfinite(value) else float(value)


class SummaryBuilder:
    """Feeds scored and skipped frames into per-sequence and overall groups."""

    def __init__(self, min_depth: float, max_depth: float, distance_bins: tuple[float, float]) -> None:
        self.overall = _Group()
        self.sequences: dict[str, _Group] = {}
        self.skip_examples: dict[str, str] = {}
        edges = [min_depth, *distance_bins, max_depth]
        self.bin_ranges = list(zip(edges[:-1], edges[1:]))
        self.error_edges = np.linspace(-ERROR_HIST_RANGE, ERROR_HIST_RANGE, ERROR_HIST_BINS + 1)
        self.distance_edges = np.linspace(min_depth, max_depth, DISTANCE_CURVE_BINS + 1)

    def _groups(self, sequence: str) -> tuple[_Group, _Group]:
        if sequence not in self.sequences:
            self.sequences[sequence] = _Group()
        return self.overall, self.sequences[sequence]

    def add_scored(self, scored: ScoredFrame) -> None:
        for group in self._groups(scored.record.sequence):
            group.records += 1
            group.add(scored)

    def add_skipped(self, sequence: str, skip: Skip) -> None:
        self.skip_examples.setdefault(skip.reason, skip.detail)
        for group in self._groups(sequence):
            group.records += 1
            group.skipped[skip.reason] += 1

    @property
    def scored(self) -> int:
        return self.overall.scored

    def to_dict(self) -> dict:
        """The metrics part of summary.json (the labeller adds run information)."""
        curve = self.overall.distance_curve
        with np.errstate(invalid="ignore", divide="ignore"):
            abs_rel = curve[:, 1] / curve[:, 0]
            rmse = np.sqrt(curve[:, 2] / curve[:, 0])
        result = self.overall.to_dict(self.bin_ranges)
        result["skip_examples"] = dict(sorted(self.skip_examples.items()))
        result["sequences"] = {name: group.to_dict(self.bin_ranges) for name, group in self.sequences.items()}
        result["histograms"] = {
            "signed_rel_error": {"edges": self.error_edges.round(6).tolist(),
                                 "counts": self.overall.error_hist.round().astype(int).tolist(),
                                 "note": "(p - g) / g over scored pixels; values beyond the edges are counted "
                                         "in the first / last bin"},
            "error_vs_distance": {"edges_m": self.distance_edges.round(4).tolist(),
                                  "pixels": curve[:, 0].round().astype(int).tolist(),
                                  "abs_rel": [_num(v) for v in abs_rel], "rmse": [_num(v) for v in rmse]},
        }
        return result
