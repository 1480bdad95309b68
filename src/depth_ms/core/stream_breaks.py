"""Where a stream of frames restarts: the one rule of the depth node and the labeller's replay."""
from __future__ import annotations

from typing import Optional


class StreamBreaks:
    """Where a stream of frames restarts as the depth node sees it: another sequence, time going back by more
    than ``tolerance`` seconds, or another image size (the events that reset a stateful estimator)."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self._last: Optional[tuple[str, float, tuple]] = None

    def reason(self, sequence: str, stamp: float, size: tuple) -> Optional[str]:
        """Why this frame starts a new stream, or None (always None for the first frame)."""
        last, self._last = self._last, (sequence, stamp, tuple(size))
        if last is None:
            return None
        if sequence != last[0]:
            return f"another sequence ({last[0]} -> {sequence})"
        if stamp < last[1] - self.tolerance:
            return f"time jumped backwards by {last[1] - stamp:.3f} s (bag loop?)"
        if tuple(size) != last[2]:
            return f"image size changed {'x'.join(map(str, last[2]))} -> {'x'.join(map(str, size))}"
        return None

    def restarts(self, sequence: str, stamp: float, size: tuple) -> bool:
        """True when this frame starts a new stream (never for the first frame)."""
        return self.reason(sequence, stamp, size) is not None
