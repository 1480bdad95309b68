"""Pair messages of several streams by stamp, streaming, with a tolerance; count what does not pair.

One stream is the reference (one output per reference message, in arrival order). Every other
stream is either ``nearest`` (the message closest in stamp within the tolerance, e.g. ground truth)
or ``bracket`` (the last message at or before and the first at or after the stamp, each within the
bracket tolerance, e.g. poses to interpolate). A reference is resolved as soon as every stream has
shown a message beyond its window, or when the newest stamp seen is ``max_lag`` ahead (so a silent
stream never makes the pairer hold the whole bag), or at :meth:`StampPairer.finish`.
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

NEAREST = "nearest"
BRACKET = "bracket"


@dataclass
class Match:
    """One reference message and its partners (None where nothing was within the tolerance)."""

    stamp: float
    reference: Any
    nearest: dict[str, Any] = field(default_factory=dict)  # stream -> payload or None
    bracket: dict[str, tuple[Optional[tuple[float, Any]], Optional[tuple[float, Any]]]] = \
        field(default_factory=dict)  # stream -> ((stamp, payload) before, (stamp, payload) after)


@dataclass
class _Entry:
    stamp: float
    payload: Any
    used: bool = False


@dataclass
class PairingCounts:
    """Reference messages seen; per stream: references left without a partner, messages never used."""

    references: int = 0
    unmatched: dict[str, int] = field(default_factory=dict)
    unused: dict[str, int] = field(default_factory=dict)


class StampPairer:
    """Streaming stamp matcher (see the module docstring)."""

    def __init__(self, reference: str, streams: dict[str, str], tolerance: float,
                 bracket_tolerance: float = 0.1, max_lag: float = 2.0) -> None:
        if any(kind not in (NEAREST, BRACKET) for kind in streams.values()):
            raise ValueError(f"stream kinds must be '{NEAREST}' or '{BRACKET}', got {streams}")
        self.reference = reference
        self.streams = dict(streams)
        self.tolerance = tolerance
        self.bracket_tolerance = bracket_tolerance
        self.max_lag = max_lag
        self._buffers: dict[str, list[_Entry]] = {name: [] for name in streams}
        self._stamps: dict[str, list[float]] = {name: [] for name in streams}
        self._latest = {name: -math.inf for name in streams}
        self._pending: deque[tuple[float, Any]] = deque()
        self._newest = -math.inf
        self.counts = PairingCounts(unmatched={n: 0 for n in streams},
                                    unused={n: 0 for n, kind in streams.items() if kind == NEAREST})

    def _window(self, stream: str) -> float:
        return self.tolerance if self.streams[stream] == NEAREST else self.bracket_tolerance

    def push(self, stream: str, stamp: float, payload: Any) -> list[Match]:
        """Add one message; returns the references this resolves (oldest first)."""
        self._newest = max(self._newest, stamp)
        if stream == self.reference:
            self.counts.references += 1
            self._pending.append((stamp, payload))
        elif stream in self.streams:
            stamps = self._stamps[stream]
            position = bisect.bisect_right(stamps, stamp)
            stamps.insert(position, stamp)
            self._buffers[stream].insert(position, _Entry(stamp, payload))
            self._latest[stream] = max(self._latest[stream], stamp)
        else:
            raise KeyError(f"unknown stream '{stream}'")
        return self._resolve(final=False)

    def finish(self) -> list[Match]:
        """Resolve everything still pending and count the partners that were never used."""
        matches = self._resolve(final=True)
        for name, buffer in self._buffers.items():
            if self.streams[name] == NEAREST:
                self.counts.unused[name] += sum(not entry.used for entry in buffer)
            buffer.clear()
            self._stamps[name].clear()
        return matches

    def _ready(self, stamp: float) -> bool:
        if self._newest - stamp >= self.max_lag:
            return True
        return all(self._latest[name] > stamp + self._window(name) for name in self.streams)

    def _resolve(self, final: bool) -> list[Match]:
        matches = []
        while self._pending and (final or self._ready(self._pending[0][0])):
            stamp, payload = self._pending.popleft()
            match = Match(stamp, payload)
            for name, kind in self.streams.items():
                if kind == NEAREST:
                    match.nearest[name] = self._take_nearest(name, stamp)
                else:
                    match.bracket[name] = self._bracket(name, stamp)
            matches.append(match)
        if matches:
            self._prune(matches[-1].stamp)
        return matches

    def _take_nearest(self, name: str, stamp: float) -> Any:
        stamps = self._stamps[name]
        position = bisect.bisect_left(stamps, stamp)
        best = None
        for candidate in (position - 1, position):
            if 0 <= candidate < len(stamps) and abs(stamps[candidate] - stamp) <= self.tolerance:
                if best is None or abs(stamps[candidate] - stamp) < abs(stamps[best] - stamp):
                    best = candidate
        if best is None:
            self.counts.unmatched[name] += 1
            return None
        entry = self._buffers[name][best]
        entry.used = True
        return entry.payload

    def _bracket(self, name: str, stamp: float):
        stamps, buffer = self._stamps[name], self._buffers[name]
        after_index = bisect.bisect_left(stamps, stamp)
        before = after = None
        if after_index < len(stamps) and stamps[after_index] - stamp <= self.bracket_tolerance:
            after = (stamps[after_index], buffer[after_index].payload)
            if stamps[after_index] == stamp:
                before = after
        if before is None and after_index > 0 and stamp - stamps[after_index - 1] <= self.bracket_tolerance:
            before = (stamps[after_index - 1], buffer[after_index - 1].payload)
        if before is None and after is None:
            self.counts.unmatched[name] += 1
        return before, after

    def _prune(self, resolved_stamp: float) -> None:
        """Drop partners too old for any later reference (references arrive roughly in stamp order)."""
        oldest = min([resolved_stamp] + [stamp for stamp, _ in self._pending])
        for name, kind in self.streams.items():
            stamps, buffer = self._stamps[name], self._buffers[name]
            cutoff = bisect.bisect_left(stamps, oldest - self._window(name))
            if kind == BRACKET:
                cutoff = max(cutoff - 1, 0)  # keep the last pose before the window for interpolation
            else:
                self.counts.unused[name] += sum(not entry.used for entry in buffer[:cutoff])
            del stamps[:cutoff]
            del buffer[:cutoff]
