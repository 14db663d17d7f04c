"""Small vocabularies shared by the domain modules."""

from __future__ import annotations

import math
from enum import StrEnum

__all__ = ["Side", "is_finite_number"]


class Side(StrEnum):
    """Order or fill side, spelled as IB spells actions."""

    BUY = "BUY"
    SELL = "SELL"


def is_finite_number(value: object) -> bool:
    """True for a real number (int, float, numpy scalar) that is finite; False for NaN, inf,
    None, strings and anything else float() refuses."""
    if isinstance(value, str | bytes):
        return False
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
