"""The trading signal: a state machine FLAT -> LONG_SPREAD / SHORT_SPREAD -> FLAT.

spread = log(TLTW) - beta log(buy-write index) - alpha, z its rolling z-score.

* LONG_SPREAD: the spread is low (TLTW cheap against the buy-write): buy TLTW, sell the
  buy-write. Entered at z <= -entry_z.
* SHORT_SPREAD: the spread is high: sell TLTW, buy the buy-write. Entered at z >= entry_z.

Rules, checked in this order on each update (inputs: z, the spread's distance from its rolling
mean in basis points, the exchange timestamp of the bar, the current half-life):

* In a position: STOP when z has moved further against it to the stop band (|z| >= stop_z on
  the entry side); EXIT when z is back inside the exit band (z >= -exit_z for a long spread,
  z <= exit_z for a short one, which includes crossing over); TIME_STOP when the position is
  older than ``time_stop_half_lives`` half-lives (the half-life fixed at entry).
* FLAT: ENTER when |z| >= entry_z, |z| < stop_z (an entry beyond the stop band would stop at
  once) and |distance_bp| >= min_distance_bp (a tiny spread with a tiny standard deviation can
  show a large z on a move worth less than the costs).
* After a STOP or TIME_STOP the machine is FLAT and blocked: it does not re-enter until |z| has
  been back inside the entry band (the same dislocation would be re-entered at once).

The floor under the z denominator is :class:`trading.domain.spread.RollingZScore`'s ``min_std``.
A dollar-loss stop is the risk service's (``trading.domain.risk``). Nothing here reads the clock:
timestamps come from the caller and must be timezone-aware and non-decreasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from trading.domain.common import is_finite_number

__all__ = [
    "SignalAction",
    "SignalBands",
    "SignalDecision",
    "SignalMachine",
    "SpreadPosition",
]


class SpreadPosition(StrEnum):
    FLAT = "FLAT"
    LONG_SPREAD = "LONG_SPREAD"
    SHORT_SPREAD = "SHORT_SPREAD"


class SignalAction(StrEnum):
    NONE = "NONE"
    ENTER_LONG_SPREAD = "ENTER_LONG_SPREAD"
    ENTER_SHORT_SPREAD = "ENTER_SHORT_SPREAD"
    EXIT = "EXIT"
    STOP = "STOP"
    TIME_STOP = "TIME_STOP"


@dataclass(frozen=True, slots=True)
class SignalBands:
    """Bands in z units, the minimum distance in basis points, the time stop in half-lives."""

    entry_z: float = 2.0
    exit_z: float = 0.5
    stop_z: float = 4.0
    min_distance_bp: float = 5.0
    time_stop_half_lives: float = 3.0

    def __post_init__(self) -> None:
        for name in ("entry_z", "exit_z", "stop_z", "min_distance_bp", "time_stop_half_lives"):
            value = getattr(self, name)
            if not (is_finite_number(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not self.exit_z < self.entry_z < self.stop_z:
            raise ValueError(
                f"bands must satisfy exit_z < entry_z < stop_z, got {self.exit_z!r}, "
                f"{self.entry_z!r}, {self.stop_z!r}"
            )
        if self.time_stop_half_lives <= 0:
            raise ValueError(f"time_stop_half_lives must be > 0, got {self.time_stop_half_lives!r}")


@dataclass(frozen=True, slots=True)
class SignalDecision:
    """The machine's answer to one update: the new position, the action to take, and why."""

    position: SpreadPosition
    action: SignalAction
    reason: str
    z: float
    distance_bp: float
    timestamp: datetime


def _aware(moment: datetime) -> datetime:
    if not isinstance(moment, datetime):
        raise ValueError(f"timestamp must be a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamp must be timezone-aware, got naive {moment.isoformat()}")
    return moment


class SignalMachine:
    """The state machine of the module docstring. State: position, entry time and z, the
    half-life at entry, the re-entry block and the last timestamp (``to_state`` /
    ``from_state``)."""

    __slots__ = (
        "bands",
        "blocked",
        "entry_half_life_seconds",
        "entry_time",
        "entry_z",
        "last_time",
        "position",
    )

    def __init__(self, bands: SignalBands = SignalBands()) -> None:
        self.bands = bands
        self.position = SpreadPosition.FLAT
        self.entry_time: datetime | None = None
        self.entry_z = math.nan
        self.entry_half_life_seconds = math.nan
        self.blocked = False
        self.last_time: datetime | None = None

    def update(
        self, z: float, distance_bp: float, timestamp: datetime, half_life_seconds: float
    ) -> SignalDecision:
        """Advance on one bar. ``distance_bp`` = (spread - rolling mean) x 10,000;
        ``half_life_seconds`` the spread's current half-life (used when entering)."""
        z = float(z)
        distance_bp = float(distance_bp)
        if not math.isfinite(z):
            raise ValueError(f"z must be finite, got {z!r}")
        if not math.isfinite(distance_bp):
            raise ValueError(f"distance_bp must be finite, got {distance_bp!r}")
        timestamp = _aware(timestamp)
        if self.last_time is not None and timestamp < self.last_time:
            raise ValueError(
                f"timestamp {timestamp.isoformat()} is before the last one "
                f"{self.last_time.isoformat()}"
            )
        self.last_time = timestamp
        if self.position is SpreadPosition.FLAT:
            return self._flat(z, distance_bp, timestamp, half_life_seconds)
        return self._in_position(z, distance_bp, timestamp)

    def _decide(
        self, action: SignalAction, reason: str, z: float, distance_bp: float, moment: datetime
    ) -> SignalDecision:
        return SignalDecision(self.position, action, reason, z, distance_bp, moment)

    def _flat(
        self, z: float, distance_bp: float, moment: datetime, half_life_seconds: float
    ) -> SignalDecision:
        bands = self.bands
        magnitude = abs(z)
        if self.blocked:
            if magnitude < bands.entry_z:
                self.blocked = False
                return self._decide(
                    SignalAction.NONE,
                    f"re-entry unblocked: |z| {magnitude:.3f} back inside entry band "
                    f"{bands.entry_z}",
                    z,
                    distance_bp,
                    moment,
                )
            return self._decide(
                SignalAction.NONE,
                f"blocked after a stop until |z| < {bands.entry_z} (z {z:.3f})",
                z,
                distance_bp,
                moment,
            )
        if magnitude < bands.entry_z:
            return self._decide(
                SignalAction.NONE,
                f"|z| {magnitude:.3f} < entry {bands.entry_z}",
                z,
                distance_bp,
                moment,
            )
        if magnitude >= bands.stop_z:
            return self._decide(
                SignalAction.NONE,
                f"|z| {magnitude:.3f} is beyond the stop band {bands.stop_z}: no entry",
                z,
                distance_bp,
                moment,
            )
        if abs(distance_bp) < bands.min_distance_bp:
            return self._decide(
                SignalAction.NONE,
                f"|distance| {abs(distance_bp):.2f} bp < minimum {bands.min_distance_bp} bp "
                f"(z {z:.3f})",
                z,
                distance_bp,
                moment,
            )
        if not (math.isfinite(half_life_seconds) and half_life_seconds > 0):
            raise ValueError(f"half_life_seconds must be finite and > 0, got {half_life_seconds!r}")
        self.entry_time = moment
        self.entry_z = z
        self.entry_half_life_seconds = float(half_life_seconds)
        if z > 0:
            self.position = SpreadPosition.SHORT_SPREAD
            action = SignalAction.ENTER_SHORT_SPREAD
            side = "spread rich: sell TLTW, buy the buy-write"
        else:
            self.position = SpreadPosition.LONG_SPREAD
            action = SignalAction.ENTER_LONG_SPREAD
            side = "spread cheap: buy TLTW, sell the buy-write"
        return self._decide(
            action,
            f"z {z:.3f} beyond entry {bands.entry_z}, distance {distance_bp:.2f} bp: {side}",
            z,
            distance_bp,
            moment,
        )

    def _close(self, blocked: bool) -> None:
        self.position = SpreadPosition.FLAT
        self.entry_time = None
        self.entry_z = math.nan
        self.entry_half_life_seconds = math.nan
        self.blocked = blocked

    def _in_position(self, z: float, distance_bp: float, moment: datetime) -> SignalDecision:
        bands = self.bands
        # Signed so that "against the position" is positive: a long spread loses as z falls.
        against = -z if self.position is SpreadPosition.LONG_SPREAD else z
        if against >= bands.stop_z:
            self._close(blocked=True)
            return self._decide(
                SignalAction.STOP,
                f"z {z:.3f} reached the stop band {bands.stop_z}",
                z,
                distance_bp,
                moment,
            )
        if against <= bands.exit_z:
            self._close(blocked=False)
            return self._decide(
                SignalAction.EXIT,
                f"z {z:.3f} back inside the exit band {bands.exit_z}",
                z,
                distance_bp,
                moment,
            )
        assert self.entry_time is not None
        held_seconds = (moment - self.entry_time).total_seconds()
        limit_seconds = bands.time_stop_half_lives * self.entry_half_life_seconds
        if held_seconds >= limit_seconds:
            self._close(blocked=True)
            return self._decide(
                SignalAction.TIME_STOP,
                f"held {held_seconds:.0f} s >= {bands.time_stop_half_lives} half-lives "
                f"({limit_seconds:.0f} s); z {z:.3f}",
                z,
                distance_bp,
                moment,
            )
        return self._decide(
            SignalAction.NONE,
            f"holding {self.position.value}: z {z:.3f}",
            z,
            distance_bp,
            moment,
        )

    def flatten(self) -> None:
        """Force FLAT without a block (the position was closed elsewhere, e.g. by risk)."""
        self._close(blocked=False)

    def to_state(self) -> dict[str, Any]:
        return {
            "position": self.position.value,
            "entry_time": None if self.entry_time is None else self.entry_time.isoformat(),
            "entry_z": self.entry_z,
            "entry_half_life_seconds": self.entry_half_life_seconds,
            "blocked": self.blocked,
            "last_time": None if self.last_time is None else self.last_time.isoformat(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], bands: SignalBands = SignalBands()) -> SignalMachine:
        machine = cls(bands)
        machine.position = SpreadPosition(state["position"])
        entry_time = state["entry_time"]
        machine.entry_time = (
            None if entry_time is None else _aware(datetime.fromisoformat(entry_time))
        )
        machine.entry_z = float(state["entry_z"])
        machine.entry_half_life_seconds = float(state["entry_half_life_seconds"])
        machine.blocked = bool(state["blocked"])
        last_time = state["last_time"]
        machine.last_time = None if last_time is None else _aware(datetime.fromisoformat(last_time))
        if machine.position is not SpreadPosition.FLAT and machine.entry_time is None:
            raise ValueError(f"position {machine.position} needs an entry_time")
        return machine
