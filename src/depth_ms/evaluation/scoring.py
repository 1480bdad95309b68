"""Score one frame: valid mask, alignment, clipping, metrics (overall and per distance bin), temporal.

:class:`FrameScorer` is stateful only for the temporal metrics (it keeps the previous scored frame of
the current sequence); everything else is a function of the record.
"""
from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np

from depth_ms.core.image_ops import resize_depth
from depth_ms.core.types import DepthKind, Intrinsics

from . import temporal
from .alignment import LinearFit, apply_alignment, fit_inputs, native_space, resolve_space
from .config import PREDICTION_KINDS, LabellerConfig
from .metrics import binned_term_sums, metrics_from_sums, valid_mask
from .records import FrameRecord, SkipFrame

BIN_NAMES = ("near", "mid", "far")
ERROR_HIST_RANGE = 1.0  # signed relative error histogram spans [-1, 1]; outside values go to the edge bins
ERROR_HIST_BINS = 80
DISTANCE_CURVE_BINS = 64  # error vs distance: bins over [min_depth, max_depth]
HISTOGRAM_PIXELS = 20_000  # at most this many (evenly strided) pixels per frame feed the histograms


@dataclass
class ScoredFrame:
    """Everything computed for one frame. Arrays are (H, W) at the ground-truth size."""

    record: FrameRecord
    aligned: np.ndarray  # float32 metres after alignment and clipping; NaN without prediction
    mask: np.ndarray  # bool: pixels scored (valid GT and a finite prediction)
    space: str  # alignment applied: none | depth | disparity
    scale: float
    shift: float
    kind: DepthKind
    metrics: dict[str, float]
    bin_sums: np.ndarray  # (3, len(TERM_NAMES)) pixel-term sums per distance bin
    n_valid_gt: int  # valid ground-truth pixels
    coverage: float  # share of them with a finite prediction
    tae: float = math.nan  # percent, vs the previous frame (NaN when not comparable)
    flicker: float = math.nan  # percent, vs the previous frame
    static_share: float = math.nan
    resized_from: Optional[tuple[int, int]] = None  # (w, h) of the prediction when it was resized
    error_hist: Optional[np.ndarray] = None  # (ERROR_HIST_BINS,) pixel counts
    distance_curve: Optional[np.ndarray] = None  # (DISTANCE_CURVE_BINS, 3): count, sum abs_rel, sum sq_err
    tae_job: Optional[Future] = None  # TAE still being computed on the worker thread (see finish)

    def finish(self) -> "ScoredFrame":
        """Wait for the TAE computed in the background; returns self."""
        if self.tae_job is not None:
            job, self.tae_job = self.tae_job, None
            self.tae = job.result()
        return self

    @property
    def bin_metrics(self) -> dict[str, dict[str, float]]:
        return {name: metrics_from_sums(sums) for name, sums in zip(BIN_NAMES, self.bin_sums)}

    @property
    def signed_rel_error(self) -> np.ndarray:
        """(H, W) float32 (p - g) / g on scored pixels, NaN elsewhere (for error maps)."""
        error = np.full(self.aligned.shape, np.nan, dtype=np.float32)
        gt = self.record.gt
        error[self.mask] = (self.aligned[self.mask] - gt[self.mask]) / gt[self.mask]
        return error


@dataclass
class _Previous:
    sequence: str
    stamp: float
    aligned: np.ndarray  # with the sequence's alignment (what the temporal metrics compare)
    gt: np.ndarray
    mask: np.ndarray  # scored pixels: valid GT with a finite prediction
    pose: Optional[np.ndarray]


class FrameScorer:
    """Turns records into :class:`ScoredFrame` objects (raises :class:`SkipFrame` with the reason)."""

    def __init__(self, config: LabellerConfig) -> None:
        self.config = config
        self.scoring = config.scoring
        self._previous: Optional[_Previous] = None
        low, high = self.scoring.min_depth, self.scoring.max_depth
        self._curve_edges = np.linspace(low, high, DISTANCE_CURVE_BINS + 1)

    def reset(self) -> None:
        """Forget the previous frame (a new sequence starts)."""
        self._previous = None

    # ------------------------------------------------------------------ pieces
    def kind_of(self, record: FrameRecord) -> DepthKind:
        override = PREDICTION_KINDS[self.scoring.prediction_kind]
        return DepthKind(override if override is not None else record.prediction.kind)

    def space_of(self, record: FrameRecord) -> str:
        return resolve_space(self.scoring.alignment, self.kind_of(record))

    def prepare(self, record: FrameRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, Optional[tuple[int, int]]]:
        """(gt, prediction, valid GT mask, original prediction size if resized) or SkipFrame."""
        if record.skip is not None:
            raise SkipFrame(record.skip.reason, record.skip.detail)
        if record.gt is None:
            raise SkipFrame("no_gt", "no ground truth paired with this frame")
        if record.prediction is None:
            raise SkipFrame("no_prediction", "no prediction for this frame")
        gt = record.gt
        pred = np.asarray(record.prediction.depth, dtype=np.float32)
        resized_from = None
        if pred.shape != gt.shape:
            (gh, gw), (ph, pw) = gt.shape, pred.shape
            same_aspect = abs(pw / ph - gw / gh) <= 0.01 * gw / gh
            if not (self.scoring.resize_prediction and same_aspect):
                why = "other aspect ratio" if not same_aspect else "scoring.resize_prediction is false"
                raise SkipFrame("size_mismatch", f"prediction is {pw}x{ph} but ground truth {gw}x{gh} ({why})")
            pred = resize_depth(pred, gw, gh)  # (H, W)
            resized_from = (pw, ph)
        mask = valid_mask(gt, self.scoring.min_depth, self.scoring.max_depth, self.scoring.crop)  # (H, W)
        if not mask.any():
            raise SkipFrame("no_valid_gt", f"no valid ground-truth pixel (all NaN or outside "
                                           f"({self.scoring.min_depth}, {self.scoring.max_depth}) m)")
        return gt, pred, mask, resized_from

    def add_to_fit(self, record: FrameRecord, fit: LinearFit) -> None:
        """Per-sequence alignment, first pass: add this frame's valid pixels to ``fit`` (skips silently)."""
        try:
            gt, pred, mask, _ = self.prepare(record)
        except SkipFrame:
            return
        space = self.space_of(record)
        if space == "none":
            return
        mask &= np.isfinite(pred)
        fit.add(*fit_inputs(pred[mask], gt[mask], space))

    # ------------------------------------------------------------------ scoring
    def score(self, record: FrameRecord, sequence_fit: Optional[tuple[float, float]] = None) -> ScoredFrame:
        """Score ``record``; ``sequence_fit`` is the (scale, shift) of its whole sequence.

        The spatial metrics use the per-frame fit (scope frame) or ``sequence_fit`` (scope sequence); the
        temporal metrics (TAE, flicker) always use ``sequence_fit``, as Video Depth Anything's eval_tae.py
        aligns a whole sequence once: a per-frame fit would remove exactly the frame-to-frame scale drift
        they exist to measure. Without ``sequence_fit`` they fall back to the frame's own alignment.
        """
        return self.score_async(record, sequence_fit).finish()

    def score_async(self, record: FrameRecord, sequence_fit: Optional[tuple[float, float]] = None) -> ScoredFrame:
        """Like :meth:`score`, but TAE may still run on the worker thread: call ``finish()`` on the result.

        The labeller finishes frame t after scoring frame t+1, so TAE overlaps the next frame's work.
        """
        gt, pred, gt_mask, resized_from = self.prepare(record)
        kind = self.kind_of(record)
        space = resolve_space(self.scoring.alignment, kind)
        mask = gt_mask & np.isfinite(pred)  # (H, W)
        n_valid_gt = int(np.count_nonzero(gt_mask))
        n_scored = int(np.count_nonzero(mask))
        if n_scored == 0:
            raise SkipFrame("no_prediction_pixels", "the prediction is NaN on every valid ground-truth pixel")
        gt_values = gt[mask]  # (N,)
        apply_space = space
        if space == "none":  # the prediction's own conversion to metres
            apply_space = native_space(kind)
            scale, shift = (1.0, 0.0) if kind == DepthKind.METRIC else (record.prediction.scale,
                                                                          record.prediction.shift)
        elif self.scoring.scope == "sequence":
            if sequence_fit is None or not math.isfinite(sequence_fit[0]):
                raise SkipFrame("no_alignment", "no sequence alignment could be fitted")
            scale, shift = sequence_fit
        else:
            fit = LinearFit()
            fit.add(*fit_inputs(pred[mask], gt_values, space))
            scale, shift = fit.solve()
            if not math.isfinite(scale):
                raise SkipFrame("no_alignment", f"no pixel to fit the {space} alignment (prediction <= 0?)")
        low, high = self.scoring.min_depth, self.scoring.max_depth
        aligned = apply_alignment(pred, apply_space, scale, shift, low, high)  # (H, W) metres
        temporal_aligned = aligned
        if space != "none" and self.scoring.scope == "frame" and sequence_fit is not None \
                and math.isfinite(sequence_fit[0]):
            temporal_aligned = apply_alignment(pred, space, *sequence_fit, low, high)  # (H, W) one fit per sequence
        tae_job = self._start_tae(record, temporal_aligned, mask)  # runs on the worker thread meanwhile
        pred_values = aligned[mask]  # (N,)
        bin_sums = binned_term_sums(pred_values, gt_values, self.scoring.distance_bins)  # (3, T)
        scored = ScoredFrame(record=record, aligned=aligned, mask=mask, space=space, scale=float(scale),
                             shift=float(shift), kind=kind, metrics=metrics_from_sums(bin_sums.sum(axis=0)),
                             bin_sums=bin_sums, n_valid_gt=n_valid_gt, coverage=n_scored / n_valid_gt,
                             resized_from=resized_from)
        self._histograms(scored, pred_values, gt_values)
        self._flicker(scored, temporal_aligned)
        scored.tae_job = tae_job
        self._previous = _Previous(record.sequence, record.stamp, temporal_aligned, record.gt, mask, record.pose)
        return scored

    def _histograms(self, scored: ScoredFrame, pred: np.ndarray, gt: np.ndarray) -> None:
        stride = max(1, pred.size // HISTOGRAM_PIXELS)
        pred, gt = pred[::stride], gt[::stride]  # (n,)
        rel = (pred - gt) / gt  # (n,) signed relative error
        width = 2 * ERROR_HIST_RANGE / ERROR_HIST_BINS
        index = np.clip(((rel + ERROR_HIST_RANGE) / width).astype(np.intp), 0, ERROR_HIST_BINS - 1)
        scored.error_hist = np.bincount(index, minlength=ERROR_HIST_BINS) * stride
        edges = self._curve_edges
        where = np.clip(((gt - edges[0]) / (edges[1] - edges[0])).astype(np.intp), 0, DISTANCE_CURVE_BINS - 1)
        curve = np.empty((DISTANCE_CURVE_BINS, 3))
        curve[:, 0] = np.bincount(where, minlength=DISTANCE_CURVE_BINS)
        curve[:, 1] = np.bincount(where, weights=np.abs(rel), minlength=DISTANCE_CURVE_BINS)
        curve[:, 2] = np.bincount(where, weights=np.square(pred - gt), minlength=DISTANCE_CURVE_BINS)
        scored.distance_curve = curve * stride

    def _comparable_previous(self, record: FrameRecord) -> Optional[_Previous]:
        """The previous frame if it is the same sequence, size, and close enough in time."""
        previous = self._previous
        if previous is None or previous.sequence != record.sequence or previous.gt.shape != record.gt.shape:
            return None
        if not 0 < record.stamp - previous.stamp <= self.config.temporal.max_gap:
            return None
        return previous

    def _start_tae(self, record: FrameRecord, aligned: np.ndarray, mask: np.ndarray) -> Optional[Future]:
        """Submit TAE against the previous frame to the worker thread (numpy releases the GIL)."""
        previous = self._comparable_previous(record)
        intrinsics = _intrinsics_for(record.intrinsics, record.gt.shape)
        if previous is None or intrinsics is None or previous.pose is None or record.pose is None:
            return None
        return _worker().submit(temporal.tae_pair, previous.aligned, aligned, previous.mask, mask, intrinsics,
                                previous.pose, record.pose)

    def _flicker(self, scored: ScoredFrame, aligned: np.ndarray) -> None:
        previous = self._comparable_previous(scored.record)
        if previous is not None:
            cfg = self.config.temporal
            scored.flicker, scored.static_share = temporal.flicker(
                previous.aligned, aligned, previous.gt, scored.record.gt, previous.mask, scored.mask,
                cfg.static_threshold, cfg.min_static_pixels)


@lru_cache(maxsize=1)
def _worker() -> ThreadPoolExecutor:
    """The thread computing TAE while the caller computes the other metrics of the frame."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="tae")


def _intrinsics_for(intrinsics: Optional[Intrinsics], shape: tuple[int, int]) -> Optional[Intrinsics]:
    """Intrinsics rescaled to the ground-truth size (same aspect ratio), else None."""
    if intrinsics is None:
        return None
    height, width = shape
    if intrinsics.size == (width, height):
        return intrinsics
    return intrinsics.scaled_to(width, height) if intrinsics.same_aspect(width, height) else None
