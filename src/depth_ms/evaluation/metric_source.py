"""The depth node's metric pipeline, offline: each relative prediction gets its scale from the configured source.

Wraps any FrameSource with predictions. Frames with a metric scale keep their relative map with the scale
and shift attached (alignment ``none`` then scores the metres the node would publish); frames without one
are skipped as ``no_metric_scale`` (the node publishes no metric depth for them) and counted. The scaler's
state is reset on the same events as the estimator's: a new sequence, time going back, a new image size.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from depth_ms.core.types import DepthKind
from depth_ms.core.stream_breaks import StreamBreaks
from depth_ms.metric import MetricScaler, ScaleConfig, ScaleContext

from .records import FrameRecord, FrameSource, Skip, SourceStage


class MetricSource(SourceStage):
    """A FrameSource that attaches the metric scale of ``config`` to each prediction of ``base``."""

    def __init__(self, base: FrameSource, config: ScaleConfig, time_jump_tolerance: float = 0.5) -> None:
        super().__init__(base)
        self.config = config
        self.time_jump_tolerance = time_jump_tolerance
        self.no_scale = 0  # frames without a metric scale in the last pass

    @property
    def counts(self) -> dict[str, int]:
        return {**self.base.counts, "frames_without_metric_scale": self.no_scale}

    def records(self) -> Iterator[FrameRecord]:
        self.no_scale = 0
        scalers: dict[DepthKind, MetricScaler] = {}
        breaks = StreamBreaks(self.time_jump_tolerance)
        for record in self.base.records():
            prediction = record.prediction
            if prediction is None or record.skip is not None:
                yield record
                continue
            if prediction.kind not in scalers:
                scalers[prediction.kind] = MetricScaler(self.config, prediction.kind)
            scaler = scalers[prediction.kind]
            if breaks.restarts(record.sequence, record.stamp, prediction.depth.shape):
                scaler.reset()
            context = ScaleContext(record.stamp, record.intrinsics, record.pose, record.rangefinder, record.gt)
            try:
                estimate = scaler.update(prediction.depth, context)
            except Exception as exc:  # noqa: BLE001 - one frame that breaks the fit is counted, the run goes on
                yield replace(record, skip=Skip("failed", f"metric scale: {type(exc).__name__}: {exc}"))
                continue
            if not estimate.metric:
                self.no_scale += 1
                yield replace(record, skip=Skip("no_metric_scale", estimate.reason))
                continue
            yield replace(record, prediction=replace(prediction, scale=estimate.scale, shift=estimate.shift))
