"""Repeated rejections, counted: one decision record per pair and reasons per window (no I/O).

A producer that keeps asking for what risk keeps refusing (an exit while its pair's entry
worked, once: 240 refusals a minute at 600x) would fill the decision stream and the logs with
copies. `RejectionLog.admit` says whether a rejection is the first of its kind (pair and reason
codes) in the window, to be written, or a repeat, to be counted; the written record of the next
window carries the count of the ones held back. `rate(pair, now)` is how many rejections the
pair had in the last minute, which risk reports as a wedge when it stays high.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["RejectionLog"]

MINUTE_S = 60.0


@dataclass
class RejectionLog:
    window_s: float = 60.0
    first: dict[tuple[str, tuple[str, ...]], float] = field(default_factory=dict)
    held_back: dict[tuple[str, tuple[str, ...]], int] = field(default_factory=dict)
    times: dict[str, deque[float]] = field(default_factory=dict)

    def admit(self, pair: str, codes: tuple[str, ...], now: float) -> tuple[bool, int]:
        """(write this one?, repeats held back since the last one written of this kind)."""
        times = self.times.setdefault(pair, deque())
        times.append(now)
        key = (pair, codes)
        started = self.first.get(key)
        if started is not None and now - started < self.window_s:
            self.held_back[key] = self.held_back.get(key, 0) + 1
            return False, 0
        self.first[key] = now
        return True, self.held_back.pop(key, 0)

    def rate(self, pair: str, now: float) -> int:
        """Rejections of `pair` in the last minute."""
        times = self.times.get(pair)
        if not times:
            return 0
        while times and times[0] <= now - MINUTE_S:
            times.popleft()
        return len(times)

    def busiest(self, now: float) -> tuple[str, int]:
        """The pair with the most rejections in the last minute, and how many."""
        rates = {pair: self.rate(pair, now) for pair in list(self.times)}
        return max(rates.items(), key=lambda kv: kv[1], default=("", 0))
