"""Mode (b): run an estimator over the records' RGB frames in recorded order.

Every RGB frame goes through the model, also those without ground truth, so stateful estimators
(streaming Marigold's warm start) see the stream as they would live. The state is reset when a new
sequence starts, time jumps back or the image size changes, as the depth node does.
With ``cache_dir`` the predictions of the first pass are kept on disk (one .npy per frame) and replayed
on later passes (per-sequence alignment reads the stream twice; the model runs once). ``write_index`` makes
such a folder a finished store that :class:`StoredPredictions` replays in another process (``label_bag
--jobs`` / ``--resume``: one store per bag, made in parallel, kept when a run is killed).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np

from depth_ms.core.types import DepthKind, DepthPrediction
from depth_ms.core.stream_breaks import StreamBreaks

from .labels import frame_stem
from .records import FrameRecord, FrameSource, Skip, SourceStage

if TYPE_CHECKING:  # the protocol only; evaluation never imports a model at run time
    from depth_ms.models.base import DepthEstimator


DROPPED_LIVE = Skip("dropped_live", "the live node would have been busy with an earlier frame")
INDEX_FILE = "predictions.json"  # written last: a store folder without it is unfinished


def _replayed(record: FrameRecord, folder: Path, cached: dict, dropped: set, model: str) -> FrameRecord:
    """``record`` with its stored prediction (or marked dropped / failed as in the pass that made the store)."""
    stem = frame_stem(record.sequence, record.index)
    if stem in dropped:
        return replace(record, skip=DROPPED_LIVE)
    if stem in cached:
        kind, scale, shift, model_ms = cached[stem]
        prediction = DepthPrediction(np.load(folder / f"{stem}.npy"), DepthKind(kind), scale, shift)
        return replace(record, prediction=prediction, model=model, model_ms=model_ms)
    if record.rgb is not None and record.skip is None:
        return replace(record, skip=Skip("model_failed", "no prediction in the first pass"))
    return record


class ModelSource(SourceStage):
    """A FrameSource that adds the estimator's prediction to every record of ``base``."""

    def __init__(self, base: FrameSource, estimator: "DepthEstimator", time_jump_tolerance: float = 0.5,
                 cache_dir: Optional[Path] = None, live_model_ms: Optional[float] = None) -> None:
        """``live_model_ms``: None runs every frame; else frames are dropped as the live node would, with this
        model time per frame on the stamps' clock (0 = each frame's measured time); see LiveConfig."""
        super().__init__(base)
        self.estimator = estimator
        self.time_jump_tolerance = time_jump_tolerance
        self.live_model_ms = live_model_ms
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._cached: dict[str, tuple[int, float, float, float]] = {}  # stem -> (kind, scale, shift, ms)
        self._passes = 0
        self._last_model_ms = math.nan  # model time of the frame _predict ran last (live replay schedules by it)
        self.warm_up_s: Optional[float] = None
        self.resets = 0
        self.dropped = 0  # frames the live replay dropped
        self._dropped_stems: set[str] = set()

    @property
    def counts(self) -> dict[str, int]:
        counts = {**self.base.counts, "model_resets": self.resets}
        if self.live_model_ms is not None:
            counts["frames_dropped_live"] = self.dropped
        return counts

    def records(self) -> Iterator[FrameRecord]:
        replay = self._passes > 0 and self.cache_dir is not None
        self._passes += 1
        records = self.base.records()
        if replay:
            return self._replay(records)
        if self.live_model_ms is not None:
            return self._predict(self._as_live(records))
        return self._predict(records)

    def _as_live(self, records: Iterator[FrameRecord]) -> Iterator[FrameRecord]:
        """The records in order, those the live node would drop marked ``dropped_live``.

        The model is busy from a frame's start until start + its model time (on the stamps' clock); the
        newest frame that arrived meanwhile starts when it frees, the older ones are dropped. Model times
        are read from the records :meth:`_predict` has already run (it runs each one before asking for
        the next), so the schedule follows the measured times.
        """
        busy_until, held = -math.inf, None
        sequence = None
        for record in records:
            if record.rgb is None:
                yield record
                continue
            if record.sequence != sequence:  # a new bag: the node would start idle
                if held is not None:
                    busy_until = yield from self._start(held, busy_until)
                sequence, busy_until, held = record.sequence, -math.inf, None
            if held is not None and busy_until <= record.stamp:  # the model freed before this frame came
                busy_until = yield from self._start(held, busy_until)
                held = None
            if record.stamp >= busy_until:
                busy_until = yield from self._start(record, record.stamp)
                continue
            if held is not None:
                yield self._drop(held)
            held = record
        if held is not None:
            yield from self._start(held, busy_until)

    def _drop(self, record: FrameRecord) -> FrameRecord:
        self.dropped += 1
        self._dropped_stems.add(frame_stem(record.sequence, record.index))
        return replace(record, skip=DROPPED_LIVE)

    def _start(self, record: FrameRecord, start: float):
        """Hand ``record`` to the model at ``start``; returns when it frees (after _predict ran it)."""
        yield record
        model_ms = self.live_model_ms or (self._last_model_ms if math.isfinite(self._last_model_ms) else 0.0)
        return start + model_ms / 1e3

    def _predict(self, records: Iterator[FrameRecord]) -> Iterator[FrameRecord]:
        breaks = StreamBreaks(self.time_jump_tolerance)
        received: Optional[tuple[str, float]] = None  # (sequence, stamp) of the previous RGB frame
        input_gap: Optional[float] = None  # largest stamp step since the last predicted frame
        for record in records:
            self._last_model_ms = math.nan
            if record.rgb is not None:  # every image the node would have received, dropped ones too
                if received is not None and received[0] == record.sequence:
                    step = record.stamp - received[1]
                    input_gap = step if input_gap is None else max(input_gap, step)
                received = (record.sequence, record.stamp)
            if record.rgb is None or record.skip is DROPPED_LIVE:
                yield record
                continue
            if breaks.restarts(record.sequence, record.stamp, record.rgb.shape):
                self.estimator.reset()
                self.resets += 1
            if self.warm_up_s is None:
                self.warm_up_s = self.estimator.warm_up(record.rgb.shape[1], record.rgb.shape[0])
            frame = replace(record.to_frame(), input_gap=input_gap)
            input_gap = None
            start = time.perf_counter()
            try:
                prediction = self.estimator.predict(frame)
            except Exception as exc:  # noqa: BLE001 - one failing frame is counted, the run goes on
                if record.skip is None:
                    record = replace(record, skip=Skip("model_failed", f"{type(exc).__name__}: {exc}"))
                yield record
                continue
            record = replace(record, prediction=prediction, model=self.estimator.name,
                             model_ms=(time.perf_counter() - start) * 1e3)
            self._last_model_ms = record.model_ms
            self._store(record)
            yield record

    def _store(self, record: FrameRecord) -> None:
        if self.cache_dir is None:
            return
        stem = frame_stem(record.sequence, record.index)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(self.cache_dir / f"{stem}.npy", record.prediction.depth.astype(np.float32, copy=False))
        self._cached[stem] = (int(record.prediction.kind), record.prediction.scale, record.prediction.shift,
                             record.model_ms)

    def _replay(self, records: Iterator[FrameRecord]) -> Iterator[FrameRecord]:
        for record in records:
            yield _replayed(record, self.cache_dir, self._cached, self._dropped_stems, self.estimator.name)

    def write_index(self) -> None:
        """Finish the cache folder as a store (atomically: the index appears complete or not at all)."""
        index = {"model": self.estimator.name, "cached": self._cached, "dropped": sorted(self._dropped_stems),
                 "counts": {"model_resets": self.resets, "frames_dropped_live": self.dropped}}
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = self.cache_dir / (INDEX_FILE + ".partial")
        partial.write_text(json.dumps(index))
        os.replace(partial, self.cache_dir / INDEX_FILE)


class StoredPredictions(SourceStage):
    """Mode (b) from finished stores, one folder per sequence under ``root`` (see :meth:`ModelSource.write_index`)."""

    def __init__(self, base: FrameSource, root: Path, live: bool = False) -> None:
        super().__init__(base)
        self.root = Path(root)
        self.live = live
        self._indexes: dict[str, dict] = {}

    def _index(self, sequence: str) -> dict:
        if sequence not in self._indexes:
            path = self.root / sequence / INDEX_FILE
            self._indexes[sequence] = json.loads(path.read_text()) if path.is_file() else \
                {"model": "", "cached": {}, "dropped": [], "counts": {}}
            self._indexes[sequence]["dropped"] = set(self._indexes[sequence]["dropped"])
        return self._indexes[sequence]

    @property
    def counts(self) -> dict[str, int]:
        counts = {**self.base.counts, "model_resets": sum(i["counts"].get("model_resets", 0)
                                                           for i in self._indexes.values())}
        if self.live:
            counts["frames_dropped_live"] = sum(i["counts"].get("frames_dropped_live", 0)
                                                for i in self._indexes.values())
        return counts

    def records(self) -> Iterator[FrameRecord]:
        for record in self.base.records():
            index = self._index(record.sequence)
            yield _replayed(record, self.root / record.sequence, index["cached"], index["dropped"], index["model"])
