"""The market data's health: per instrument from good-tick times and the feed-wide flags IB's
notices raise (`HealthBoard`), and bad-data episodes logged once, not once per tick
(`EpisodeLog`). Pure: the caller gives the time and publishes what changed."""

from __future__ import annotations

from dataclasses import dataclass

from trading.broker.translate import DropReason
from trading.bus import DataHealth, DataStatus


@dataclass(slots=True)
class _InstrumentHealth:
    last_good: float
    status: DataStatus | None = None  # None: not yet published
    reason: str = ""
    bad: str = ""  # why IB's latest quote was refused, until a good one ("": it was good)


class HealthBoard:
    """Per-instrument data health from good-tick times and feed-wide flags.

    status = STALE when the feed is flagged stale (connectivity lost, data farm down), when IB's
    latest quote of the instrument was refused (NaN, crossed, ...: the last good one is no longer
    its price, so it is flagged at once, not `silence_s` later) or when it had no good tick for
    `silence_s`; else DELAYED when on delayed data; else OK.
    `evaluate(now)` returns the instruments whose status changed, as DataHealth messages.
    """

    def __init__(self, silence_s: float) -> None:
        if not silence_s > 0:
            raise ValueError(f"silence_s={silence_s!r} must be > 0")
        self.silence_s = silence_s
        self.instruments: dict[str, _InstrumentHealth] = {}
        self.feed_stale: dict[str, str] = {}  # cause -> reason text
        self.delayed = False

    def track(self, name: str, now: float) -> None:
        """Start watching an instrument; its silence clock starts now."""
        if name not in self.instruments:
            self.instruments[name] = _InstrumentHealth(last_good=now)

    def forget(self, name: str) -> None:
        self.instruments.pop(name, None)

    def good_tick(self, name: str, now: float) -> None:
        health = self.instruments.get(name)
        if health is not None:
            health.last_good = max(health.last_good, now)
            health.bad = ""

    def bad_tick(self, name: str, reason: str) -> bool:
        """IB's latest quote of `name` was refused for `reason`; True when that flags it."""
        health = self.instruments.get(name)
        if health is None or health.bad:
            return False
        health.bad = reason
        return True

    def restart_silence(self, now: float) -> None:
        """After a resubscription every instrument gets a fresh `silence_s` to speak."""
        for health in self.instruments.values():
            health.last_good = max(health.last_good, now)

    def set_feed_stale(self, cause: str, reason: str) -> None:
        self.feed_stale[cause] = reason

    def clear_feed_stale(self, cause: str) -> None:
        self.feed_stale.pop(cause, None)

    def status_of(self, name: str, now: float) -> tuple[DataStatus, str]:
        health = self.instruments[name]
        if self.feed_stale:
            return DataStatus.STALE, "; ".join(sorted(self.feed_stale.values()))
        if health.bad:
            return DataStatus.STALE, f"IB's latest quote refused ({health.bad})"
        silent = now - health.last_good
        if silent > self.silence_s:
            return DataStatus.STALE, f"no good tick for over {self.silence_s:g}s"
        if self.delayed:
            return DataStatus.DELAYED, "delayed market data (type 3)"
        return DataStatus.OK, ""

    def is_good(self, name: str, now: float) -> bool:
        return name in self.instruments and self.status_of(name, now)[0] is not DataStatus.STALE

    def evaluate(self, now: float) -> list[DataHealth]:
        changed = []
        for name, health in self.instruments.items():
            status, reason = self.status_of(name, now)
            if status is not health.status or reason != health.reason:
                health.status, health.reason = status, reason
                changed.append(DataHealth(name, status, reason, now))
        return changed

    def stale(self) -> list[str]:
        return sorted(n for n, h in self.instruments.items() if h.status is DataStatus.STALE)


class EpisodeLog:
    """Log a bad-data episode once: when an instrument first goes bad for a reason, and once
    when it is good again (with how many ticks were dropped), never once per tick."""

    def __init__(self) -> None:
        self._open: dict[str, dict[DropReason, int]] = {}

    def bad(self, instrument: str, reason: DropReason) -> bool:
        """Count a drop; True when it opens an episode (the caller logs it)."""
        reasons = self._open.setdefault(instrument, {})
        count = reasons.get(reason, 0)
        reasons[reason] = count + 1
        return count == 0

    def good(self, instrument: str) -> dict[DropReason, int]:
        """Close the instrument's episodes; the drops per reason (empty when there were none)."""
        return self._open.pop(instrument, {}) if self._open else {}
