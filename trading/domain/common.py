"""Small vocabularies shared by the domain modules."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

__all__ = [
    "CountedDeque",
    "HedgeMethod",
    "Preset",
    "Side",
    "check_finite",
    "finite_or_none",
    "is_finite_number",
]


class Side(StrEnum):
    """Order or fill side, spelled as IB spells actions."""

    BUY = "BUY"
    SELL = "SELL"


class HedgeMethod(StrEnum):
    DELTA = "delta"  # delta-neutral from the option deltas
    OLS = "ols"  # rolling OLS of log prices
    KALMAN = "kalman"  # Kalman filter with beta and alpha as state


class Preset(StrEnum):
    """Which call the buy-write writes."""

    ATM = "atm"  # write the at-the-money call (moneyness 1.00): what the user asked for
    REPLICA = "replica"  # TLTW's own index rule: the strike nearest 102% of spot


def is_finite_number(value: object) -> bool:
    """True for a real number (int, float, numpy scalar) that is finite; False for NaN, inf,
    None, strings and anything else float() refuses."""
    if isinstance(value, str | bytes):
        return False
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def check_finite(name: str, value: float) -> float:
    """``value`` as a float; ValueError naming ``name`` when it is NaN or infinite."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def finite_or_none(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples as lists) with NaN and infinities as
    None: strict JSON has no number for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


class CountedDeque(deque[float]):
    """A deque of floats that counts every value ever appended (``appended``), whatever has
    since fallen off its left end: a writer that has sent the first n values of a window
    sends only the ``appended - n`` newest (the strategy's state, `trading.services.
    strategy_state`). The estimators' windows are these; a value is appended once a bar."""

    __slots__ = ("appended",)

    def __init__(self, values: Iterable[float] = (), maxlen: int | None = None) -> None:
        values = list(values)
        super().__init__(values, maxlen)
        self.appended = len(values)

    def append(self, value: float) -> None:
        super().append(value)
        self.appended += 1

    def extend(self, values: Iterable[float]) -> None:
        values = list(values)
        super().extend(values)
        self.appended += len(values)
