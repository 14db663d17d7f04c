"""Small vocabularies shared by the domain modules."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Side"]


class Side(StrEnum):
    """Order or fill side, spelled as IB spells actions."""

    BUY = "BUY"
    SELL = "SELL"
