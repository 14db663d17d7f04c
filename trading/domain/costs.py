"""What a trade costs: IB's fixed commissions and the round trip of a pair through its quotes.

Conventions: prices per share (an option's too, IB's convention); a TLT option is 100 shares;
a buy-write unit is 100 TLT shares and one call. A round trip enters and exits at the far touch
(a marketable limit, as the backtest's fill model and the live offset fill), so it crosses each
leg's quoted spread once: half the spread in, half out. Commissions are paid both ways, each
leg as its own order (IB charges a combo's legs separately).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trading.domain.common import is_finite_number

__all__ = ["IB_FIXED", "CommissionSchedule", "pair_round_trip_cost_usd"]

SHARES_PER_UNIT = 100
OPTION_MULTIPLIER = 100.0


@dataclass(frozen=True, slots=True)
class CommissionSchedule:
    """IB's fixed (US) schedule: stock per share with a per-order minimum, options per
    contract. The defaults are IB's published fixed rates."""

    stock_per_share_usd: float = 0.005
    stock_minimum_usd: float = 1.0
    option_per_contract_usd: float = 0.65

    def __post_init__(self) -> None:
        for name in ("stock_per_share_usd", "stock_minimum_usd", "option_per_contract_usd"):
            value = getattr(self, name)
            if not (is_finite_number(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")

    def stock_usd(self, shares: float) -> float:
        """max(per_share x shares, minimum) for one stock order of ``shares``."""
        return max(self.stock_per_share_usd * shares, self.stock_minimum_usd)

    def option_usd(self, contracts: float) -> float:
        """per_contract x contracts."""
        return self.option_per_contract_usd * contracts


IB_FIXED = CommissionSchedule()


def pair_round_trip_cost_usd(
    tltw_shares: float,
    buy_write_units: float,
    tltw_quote: tuple[float, float],
    tlt_quote: tuple[float, float],
    call_quote: tuple[float, float],
    schedule: CommissionSchedule = IB_FIXED,
) -> float:
    """USD to enter and exit a pair of ``tltw_shares`` TLTW against ``buy_write_units`` at the
    far touch, quotes as (bid, ask):

        shares x (TLTW ask - bid) + units x 100 x ((TLT ask - bid) + (call ask - bid))
        + 2 x (stock(shares) + stock(100 units) + option(units))

    Raises ValueError naming the quote that is not finite, negative or crossed.
    """
    for name, value in (("tltw_shares", tltw_shares), ("buy_write_units", buy_write_units)):
        if not (is_finite_number(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    widths = []
    for name, (bid, ask) in (("tltw", tltw_quote), ("tlt", tlt_quote), ("call", call_quote)):
        if not (math.isfinite(bid) and math.isfinite(ask)) or bid < 0 or ask < bid:
            raise ValueError(
                f"{name} quote must be finite with 0 <= bid <= ask, got {bid!r}/{ask!r}"
            )
        widths.append(ask - bid)
    tltw_width, tlt_width, call_width = widths
    crossing = tltw_shares * tltw_width + buy_write_units * SHARES_PER_UNIT * (
        tlt_width + call_width
    )
    commissions = 0.0
    if tltw_shares > 0:
        commissions += schedule.stock_usd(tltw_shares)
    if buy_write_units > 0:
        commissions += schedule.stock_usd(SHARES_PER_UNIT * buy_write_units)
        commissions += schedule.option_usd(buy_write_units)
    return crossing + 2.0 * commissions
