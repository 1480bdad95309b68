"""Temporal filter of a fitted scale and shift: smoothing in log scale, outlier gating, bounded hold."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from .config import FilterConfig
from .fit import AffineFit

# States, as depth/info and the log name them.
FITTED = "fitted"  # a fit this frame was accepted
HOLDING = "holding"  # no accepted fit this frame: the last good estimate, for at most FilterConfig.hold seconds
LOST = "lost"  # no estimate (never fitted, or held too long): metric topics stop


@dataclass
class FilteredScale:
    state: str
    scale: float = math.nan
    shift: float = math.nan
    gated: bool = False  # this frame's fit was rejected as an outlier


class ScaleFilter:
    """Feeds one fit (or None) per frame; returns the estimate to use for that frame."""

    def __init__(self, config: FilterConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self._log_scale: Optional[float] = None
        self._shift = 0.0
        self._last_accepted = -math.inf
        self._rejections = 0

    @property
    def shift(self) -> Optional[float]:
        """The filtered shift, or None before the first fit."""
        return None if self._log_scale is None else self._shift

    def update(self, fit: Optional[AffineFit], stamp: float) -> FilteredScale:
        gated = False
        if fit is not None:
            log_scale = math.log(fit.scale)
            if self._log_scale is None or self._rejections + 1 >= self.config.max_rejections and \
                    abs(log_scale - self._log_scale) > self.config.gate:
                self._log_scale, self._shift = log_scale, fit.shift  # first fit, or the scene really changed
                self._rejections = 0
                self._last_accepted = stamp
                return FilteredScale(FITTED, fit.scale, fit.shift)
            if abs(log_scale - self._log_scale) <= self.config.gate:
                a = self.config.smoothing
                self._log_scale += a * (log_scale - self._log_scale)
                self._shift += a * (fit.shift - self._shift)
                self._rejections = 0
                self._last_accepted = stamp
                return FilteredScale(FITTED, math.exp(self._log_scale), self._shift)
            self._rejections += 1
            gated = True
        if self._log_scale is not None and 0 <= stamp - self._last_accepted <= self.config.hold:
            return FilteredScale(HOLDING, math.exp(self._log_scale), self._shift, gated)
        return FilteredScale(LOST, gated=gated)
