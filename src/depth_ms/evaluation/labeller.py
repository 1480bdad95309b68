"""The labeller: score a stream of frame records and write every output, keeping results on failure.

Reads a :class:`~depth_ms.evaluation.records.FrameSource` once (twice for per-sequence alignment),
scores each record, streams per_frame.csv and the label files, and always finishes with
summary.json and the reports, also when the source fails half-way or the user interrupts.
"""
from __future__ import annotations

import datetime
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Protocol

from tqdm import tqdm

from depth_ms.core.config import to_dict

from .alignment import LinearFit
from .config import LabellerConfig
from .export import DatasetExporter
from .labels import LabelWriter
from .plots import SampleCollector
from .records import FrameSource, Skip, SkipFrame
from .reports import PerFrameCsv, write_reports
from .scoring import FrameScorer, ScoredFrame
from .summary import SummaryBuilder


class Sink(Protocol):
    """Receives every scored frame (label files, dataset export, output bag, ...)."""

    def add(self, scored: ScoredFrame) -> None:
        ...

    def close(self) -> None:
        ...


@dataclass
class RunInfo:
    """What the caller knows about the run, for the report."""

    inputs: list[str] = field(default_factory=list)
    model: str = ""
    command: str = ""


@dataclass
class LabelResult:
    summary: dict
    paths: dict[str, Path]

    @property
    def complete(self) -> bool:
        return bool(self.summary["complete"])


def needs_sequence_fit(config: LabellerConfig) -> bool:
    """True when a first pass fits one alignment per sequence: for scope sequence, and for the temporal
    metrics (which always compare frames under one alignment per sequence) unless alignment is none."""
    return config.scoring.alignment != "none"


class Labeller:
    """Scores a FrameSource into ``output_dir`` (see the module docstring)."""

    def __init__(self, config: LabellerConfig, output_dir: Path, sinks: Iterable[Sink] = (),
                 progress: bool = True, info: Optional[RunInfo] = None) -> None:
        self.config = config
        self.output_dir = Path(output_dir)
        self.extra_sinks = list(sinks)
        self.progress = progress
        self.info = info or RunInfo(model=config.model)

    def _bar(self, iterable, total: Optional[int], desc: str):
        return tqdm(iterable, total=total, desc=desc, unit="frame", disable=not self.progress, dynamic_ncols=True)

    def fit_sequences(self, source: FrameSource, notes: Optional[list[str]] = None) -> dict[str, tuple[float, float]]:
        """First pass of per-sequence alignment: one least-squares fit per sequence.

        A source that fails half-way keeps the fits of the frames read before (noted in ``notes``).
        """
        scorer = FrameScorer(self.config)
        fits: dict[str, LinearFit] = defaultdict(LinearFit)
        read = 0
        try:
            for record in self._bar(source.records(), source.expected_frames, "fit"):
                scorer.add_to_fit(record, fits[record.sequence])
                read += 1
        except Exception as exc:  # noqa: BLE001 - the scoring pass reports the failure again, with what it kept
            if notes is not None:
                notes.append(f"the per-sequence alignment pass stopped after {read} frames ({type(exc).__name__}: "
                             f"{exc}); sequences are aligned on those frames")
        return {sequence: fit.solve() for sequence, fit in fits.items()}

    def run(self, source: FrameSource) -> LabelResult:
        """Score every record of ``source``; writes all outputs and returns the summary."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        scoring = self.config.scoring
        samples = SampleCollector(self.config.outputs.samples)
        csv_sink = PerFrameCsv(self.output_dir / "per_frame.csv")
        sinks: list[Sink] = [csv_sink, samples]
        if self.config.outputs.labels:
            sinks.append(LabelWriter(self.output_dir / "labels"))
        if self.config.outputs.dataset:
            sinks.append(DatasetExporter(self.output_dir / "dataset", self.info.inputs))
        delivery = _Delivery(SummaryBuilder(scoring.min_depth, scoring.max_depth, scoring.distance_bins),
                             csv_sink, sinks + self.extra_sinks)
        scorer = FrameScorer(self.config)
        notes: list[str] = []
        fits: dict[str, tuple[float, float]] = {}
        complete = True
        try:
            if needs_sequence_fit(self.config):
                fits = self.fit_sequences(source, notes)
            for record in self._bar(source.records(), source.expected_frames, "score"):
                tick = time.perf_counter()
                try:
                    scored = scorer.score_async(record, fits.get(record.sequence))
                except SkipFrame as exc:
                    delivery.skipped(record, exc.skip)
                    continue
                except Exception as exc:  # noqa: BLE001 - a frame that breaks scoring is counted, not fatal
                    delivery.skipped(record, Skip("failed", f"{type(exc).__name__}: {exc}"))
                    continue
                finally:
                    delivery.seconds += time.perf_counter() - tick
                delivery.scored(scored)
        except KeyboardInterrupt:
            complete = False
            notes.append(f"interrupted by the user after {delivery.summary.overall.records} frames; "
                         f"results so far kept")
        except Exception as exc:  # noqa: BLE001 - a failing source or sink: keep what was computed
            complete = False
            notes.append(f"stopped after {delivery.summary.overall.records} frames: {type(exc).__name__}: {exc}")
        finally:
            notes += delivery.close()
        summary = delivery.summary
        notes = list(source.notes) + notes
        if summary.scored == 0:
            notes.append(_nothing_scored(summary))
        result = summary.to_dict()
        result.update({
            "complete": complete and not source.notes,
            "notes": notes,
            "pairing": dict(source.counts),
            "alignment_per_sequence": {name: list(fit) for name, fit in fits.items() if math.isfinite(fit[0])},
            "run": {"inputs": self.info.inputs, "model": self.info.model,
                    "mode": "model" if self.config.runs_model else "recorded",
                    "alignment": scoring.alignment, "scope": scoring.scope, "command": self.info.command,
                    "created": datetime.datetime.now().isoformat(timespec="seconds")},
            "timing": {"wall_s": time.perf_counter() - started, "scoring_s": delivery.seconds,
                       "scoring_fps": summary.overall.records / delivery.seconds if delivery.seconds > 0 else None},
            "config": to_dict(self.config),
        })
        paths = write_reports(self.output_dir, result, samples.figures(), self.config.outputs.error_range)
        paths["per_frame"] = csv_sink.path
        return LabelResult(result, paths)


class _Delivery:
    """Hands scored frames to the summary and the sinks in stream order.

    A scored frame is held until the next record arrives, so its TAE (running on the scorer's worker
    thread) overlaps the next frame's work; a skipped record first flushes the held frame.
    """

    def __init__(self, summary: SummaryBuilder, csv_sink: PerFrameCsv, sinks: list[Sink]) -> None:
        self.summary = summary
        self.csv_sink = csv_sink
        self.sinks = sinks
        self.seconds = 0.0  # time spent scoring (including waiting for TAE)
        self._pending: Optional[ScoredFrame] = None

    def skipped(self, record, skip: Skip) -> None:
        self._flush()
        self.summary.add_skipped(record.sequence, skip)
        self.csv_sink.add_skipped(record, skip)

    def scored(self, scored: ScoredFrame) -> None:
        self._flush()
        self._pending = scored

    def _flush(self) -> None:
        scored, self._pending = self._pending, None
        if scored is None:
            return
        tick = time.perf_counter()
        try:
            scored.finish()
        except Exception as exc:  # noqa: BLE001 - TAE failed: the frame is counted as failed
            self.summary.add_skipped(scored.record.sequence, Skip("failed", f"TAE: {type(exc).__name__}: {exc}"))
            self.csv_sink.add_skipped(scored.record, Skip("failed", f"TAE: {type(exc).__name__}: {exc}"))
            return
        finally:
            self.seconds += time.perf_counter() - tick
        self.summary.add_scored(scored)
        for sink in self.sinks:
            sink.add(scored)

    def close(self) -> list[str]:
        """Deliver the held frame and close every sink; returns notes about what failed."""
        notes = []
        try:
            self._flush()
        except Exception as exc:  # noqa: BLE001 - a sink failing on the last frame
            notes.append(f"the last frame could not be written: {type(exc).__name__}: {exc}")
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001
                notes.append(f"closing {type(sink).__name__} failed: {exc}")
        return notes


def _nothing_scored(summary: SummaryBuilder) -> str:
    """Explain why no frame was scored, from the most frequent skip reason."""
    skipped = summary.overall.skipped
    if not skipped:
        return "no frame was scored: no frame was read from the input (see the notes above)"
    reason = max(skipped, key=skipped.get)
    return f"no frame was scored; most frequent reason '{reason}' ({skipped[reason]}x): " \
           f"{summary.skip_examples.get(reason, '')}"
