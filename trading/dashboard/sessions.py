"""Chart time without the closed market: the x axis of the PNG plots (the page's dashboard.js
applies the same rule to its charts).

Along a series' timestamps, every gap longer than `BREAK_AFTER_S` (a night, a weekend, an
outage) loses whole hours, keeping between `KEEP_S` and `KEEP_S` + 1 h, so a session is drawn
across the chart's width instead of being squeezed by two days of closed market, and ticks at
whole hours stay whole hours. x = t - (the hours removed before t); `time_at(x)` inverts it
(a tick inside a collapsed gap has no time: it is left unlabelled).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

BREAK_AFTER_S = 1800.0
KEEP_S = 1800.0


@dataclass(frozen=True, slots=True)
class SessionBreak:
    x_before: float
    """Chart x of the last point before the gap."""
    x: float
    """Chart x of the first point after the gap."""
    offset_s: float
    """Seconds removed before this point: time = x + offset_s from here on."""
    ts: float
    """Epoch time of the first point after the gap."""


@dataclass(frozen=True, slots=True)
class SessionAxis:
    x: tuple[float, ...]
    breaks: tuple[SessionBreak, ...]

    def time_at(self, x: float) -> float | None:
        """The epoch time a chart x stands for; None inside a collapsed gap (closed market)."""
        i = bisect.bisect_right([b.x - 1.0 for b in self.breaks], x)
        if i < len(self.breaks) and x > self.breaks[i].x_before + 1.0:
            return None
        return x + (self.breaks[i - 1].offset_s if i else 0.0)

    def x_of(self, t: float) -> float:
        """The chart x of an epoch time (of this series or another drawn on the same axis)."""
        i = bisect.bisect_right([b.ts for b in self.breaks], t)
        return t - (self.breaks[i - 1].offset_s if i else 0.0)


def session_axis(ts: Sequence[float]) -> SessionAxis:
    """Chart x of each timestamp (non-decreasing), closed-market gaps collapsed."""
    x: list[float] = []
    breaks: list[SessionBreak] = []
    offset = 0.0
    for i, t in enumerate(ts):
        if not math.isfinite(t):
            raise ValueError(f"ts[{i}]={t!r} must be finite")
        if i and t - ts[i - 1] > BREAK_AFTER_S:
            before = ts[i - 1] - offset
            offset += max(0.0, math.floor((t - ts[i - 1] - KEEP_S) / 3600.0) * 3600.0)
            breaks.append(SessionBreak(before, t - offset, offset, t))
        x.append(t - offset)
    return SessionAxis(tuple(x), tuple(breaks))
