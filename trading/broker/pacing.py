"""IB's historical-data pacing rules as a pure limiter fed timestamps, and an async gate over it.

IB answers error 162 ("pacing violation") and may disconnect a client that makes, for
historical bars of 30 s or less:
  1. an identical request within 15 seconds;
  2. six or more requests for the same contract, exchange and tick type within 2 seconds;
  3. more than 60 requests within any 10-minute period.
The limiter enforces (2) across all contracts at once (at most `burst_limit`, default 5, in any
`burst_window_s`), which is stricter than IB's per-contract rule and keeps us safe whatever
farm the requests land on; (1) per request key; (3) as a sliding window.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PacingRules:
    identical_window_s: float = 15.0
    burst_limit: int = 5
    burst_window_s: float = 2.0
    window_limit: int = 60
    window_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("identical_window_s", "burst_window_s", "window_s"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"PacingRules.{name}={value!r} must be >= 0")
        for name in ("burst_limit", "window_limit"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"PacingRules.{name}={value!r} must be an int >= 1")


class PacingLimiter:
    """Sliding-window bookkeeping of sent requests. Pure: the caller passes the time.

    `wait_s(key, now)` is how long to wait before a request with `key` complies with every
    rule; `record(key, now)` notes that it was sent. Keys identify a request exactly (contract,
    end time, duration, bar size, what to show, RTH flag): equal keys are "identical requests".
    """

    def __init__(self, rules: PacingRules = PacingRules()) -> None:
        self.rules = rules
        self._sent: deque[float] = deque()  # send times within the longest window, ascending
        self._last_by_key: dict[Hashable, float] = {}

    def _forget_before(self, now: float) -> None:
        horizon = now - max(self.rules.window_s, self.rules.burst_window_s)
        while self._sent and self._sent[0] <= horizon:
            self._sent.popleft()
        stale = now - self.rules.identical_window_s
        if len(self._last_by_key) > 1024:
            self._last_by_key = {k: t for k, t in self._last_by_key.items() if t > stale}

    def wait_s(self, key: Hashable, now: float) -> float:
        """Seconds until a request with `key` may be sent (0.0 = now)."""
        self._forget_before(now)
        r = self.rules
        wait = 0.0
        last = self._last_by_key.get(key)
        if last is not None:
            wait = max(wait, last + r.identical_window_s - now)
        # The k-th most recent send must have left the window before one more may go.
        if len(self._sent) >= r.burst_limit:
            wait = max(wait, self._sent[-r.burst_limit] + r.burst_window_s - now)
        if len(self._sent) >= r.window_limit:
            wait = max(wait, self._sent[-r.window_limit] + r.window_s - now)
        return max(wait, 0.0)

    def record(self, key: Hashable, now: float) -> None:
        if self._sent and now < self._sent[-1]:
            raise ValueError(f"now={now!r} is before the last recorded request {self._sent[-1]}")
        self._sent.append(now)
        self._last_by_key[key] = now

    def sent_within(self, window_s: float, now: float) -> int:
        return sum(1 for t in self._sent if t > now - window_s)


class PacingGate:
    """Async gate: `await gate.acquire(key)` returns once the request may be sent, and records
    it. Requests are let through one at a time, in arrival order."""

    def __init__(
        self,
        rules: PacingRules = PacingRules(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = PacingLimiter(rules)
        self._clock = clock
        self._lock = asyncio.Lock()

    async def acquire(self, key: Hashable) -> float:
        """Wait until `key` complies, record it, and return the seconds waited."""
        async with self._lock:
            waited = 0.0
            while True:
                now = self._clock()
                wait = self.limiter.wait_s(key, now)
                if wait <= 0.0:
                    self.limiter.record(key, now)
                    return waited
                waited += wait
                await asyncio.sleep(wait)
