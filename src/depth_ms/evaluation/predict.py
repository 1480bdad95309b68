"""Mode (b): run an estimator over the records' RGB frames in recorded order.

Every RGB frame goes through the model, also those without ground truth, so stateful estimators
(streaming Marigold's warm start) see the stream as they would live. The state is reset when a new
sequence starts, time jumps back or the image size changes, as the depth node does.
With ``cache_dir`` the predictions of the first pass are kept on disk (one .npy per frame) and replayed
on later passes (per-sequence alignment reads the stream twice; the model runs once).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np

from depth_ms.core.types import DepthKind, DepthPrediction

from .labels import frame_stem
from .records import FrameRecord, FrameSource, Skip

if TYPE_CHECKING:  # the protocol only; evaluation never imports a model at run time
    from depth_ms.models.base import DepthEstimator


class ModelSource:
    """A FrameSource that adds the estimator's prediction to every record of ``base``."""

    def __init__(self, base: FrameSource, estimator: "DepthEstimator", time_jump_tolerance: float = 0.5,
                 cache_dir: Optional[Path] = None) -> None:
        self.base = base
        self.estimator = estimator
        self.time_jump_tolerance = time_jump_tolerance
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._cached: dict[str, tuple[int, float, float, float]] = {}  # stem -> (kind, scale, shift, ms)
        self._passes = 0
        self.warm_up_s: Optional[float] = None
        self.resets = 0

    @property
    def expected_frames(self) -> Optional[int]:
        return self.base.expected_frames

    @property
    def notes(self) -> list[str]:
        return self.base.notes

    @property
    def counts(self) -> dict[str, int]:
        return {**self.base.counts, "model_resets": self.resets}

    def records(self) -> Iterator[FrameRecord]:
        replay = self._passes > 0 and self.cache_dir is not None
        self._passes += 1
        records = self.base.records()
        return self._replay(records) if replay else self._predict(records)

    def _predict(self, records: Iterator[FrameRecord]) -> Iterator[FrameRecord]:
        last: Optional[tuple[str, float, tuple[int, ...]]] = None
        for record in records:
            if record.rgb is None:
                yield record
                continue
            key = (record.sequence, record.stamp, record.rgb.shape)
            if last is not None and (key[0] != last[0] or key[1] < last[1] - self.time_jump_tolerance
                                     or key[2] != last[2]):
                self.estimator.reset()
                self.resets += 1
            last = key
            if self.warm_up_s is None:
                self.warm_up_s = self.estimator.warm_up(record.rgb.shape[1], record.rgb.shape[0])
            start = time.perf_counter()
            try:
                prediction = self.estimator.predict(record.to_frame())
            except Exception as exc:  # noqa: BLE001 - one failing frame is counted, the run goes on
                if record.skip is None:
                    record = replace(record, skip=Skip("model_failed", f"{type(exc).__name__}: {exc}"))
                yield record
                continue
            record = replace(record, prediction=prediction, model=self.estimator.name,
                             model_ms=(time.perf_counter() - start) * 1e3)
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
            stem = frame_stem(record.sequence, record.index)
            if stem in self._cached:
                kind, scale, shift, model_ms = self._cached[stem]
                prediction = DepthPrediction(np.load(self.cache_dir / f"{stem}.npy"), DepthKind(kind), scale, shift)
                record = replace(record, prediction=prediction, model=self.estimator.name, model_ms=model_ms)
            elif record.rgb is not None and record.skip is None:
                record = replace(record, skip=Skip("model_failed", "no prediction in the first pass"))
            yield record
