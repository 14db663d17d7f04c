"""Order intents of the pair: ids, legs, sides, sizes and limit prices (pure).

Sides (the quant core's signal convention, `trading.bus.SignalAction`):

* LONG_SPREAD  (spread low, z <= -entry): BUY TLTW shares, SELL buy-write units;
* SHORT_SPREAD (spread high, z >= +entry): SELL TLTW shares, BUY buy-write units;
* an exit, stop or time stop reverses exactly the legs the entry opened: the same TLTW shares,
  the same buy-write units with the same call contract (even after the index rolled to another
  strike).

Sizing (dollar-neutral in the spread's own hedge): spread = log TLTW - beta log index, so a
position of $N of TLTW is hedged by $beta N of buy-write. A gross notional G = N (1 + beta) gives

    tltw_shares     = round(G / (1 + beta) / tltw_mid)
    buy_write_units = round(G beta / (1 + beta) / (100 (S - C)))

Limit prices: mid moved towards crossing by ``offset_bp`` basis points of the price, rounded to
the cent away from the mid (a buy rounds up, a sell down), so the order is marketable by at least
the offset. The buy-write unit price is IB's combo convention, per unit: 100 x S - C.

Intent ids are deterministic, ``<pair_id>-<purpose>-<bar end as epoch seconds>``: the same bar
replayed after a restart produces the same id, which risk-management dedupes (it is the orderRef).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trading.bus import IntentLeg, IntentPurpose, LegKind, OrderIntent, Side, SignalAction
from trading.domain.signals import SpreadPosition

if TYPE_CHECKING:
    from trading.strategy.market import EngineConfig

SHARES_PER_UNIT = 100
"""TLT shares per buy-write unit (one call contract covers 100 shares)."""
PRICE_TICK_USD = 0.01


@dataclass(frozen=True, slots=True)
class PairLegs:
    """What an entry opens (and its exit closes): sizes and the exact contracts."""

    direction: SpreadPosition  # LONG_SPREAD or SHORT_SPREAD
    tltw_shares: int
    buy_write_units: int
    call_con_id: int
    call_expiry: str
    call_strike: float

    def to_state(self) -> dict[str, Any]:
        return {
            "direction": str(self.direction),
            "tltw_shares": self.tltw_shares,
            "buy_write_units": self.buy_write_units,
            "call_con_id": self.call_con_id,
            "call_expiry": self.call_expiry,
            "call_strike": self.call_strike,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PairLegs:
        return cls(**{**state, "direction": SpreadPosition(state["direction"])})


def limit_price(mid: float, side: Side, offset_bp: float) -> float:
    """mid x (1 +/- offset_bp / 10,000) rounded to the cent away from the mid."""
    if not (math.isfinite(mid) and mid > 0):
        raise ValueError(f"mid must be finite and > 0, got {mid!r}")
    if not (math.isfinite(offset_bp) and offset_bp >= 0):
        raise ValueError(f"offset_bp must be finite and >= 0, got {offset_bp!r}")
    cents = mid * (1.0 + offset_bp / 1e4 if side is Side.BUY else 1.0 - offset_bp / 1e4) * 100
    # The 1e-6 absorbs float noise (25.10 * 100 = 2509.9999...) so an exact cent stays put.
    rounded = math.ceil(cents - 1e-6) if side is Side.BUY else math.floor(cents + 1e-6)
    return rounded / 100


def buy_write_unit_mid(tlt_mid: float, call_mid: float) -> float:
    """One buy-write unit at mid, IB's combo price: 100 x S - C (C per share, ratio 1)."""
    return SHARES_PER_UNIT * tlt_mid - call_mid


def size_legs(
    direction: SpreadPosition,
    gross_notional_usd: float,
    beta: float,
    tltw_mid: float,
    tlt_mid: float,
    call_mid: float,
    call_con_id: int,
    call_expiry: str,
    call_strike: float,
) -> PairLegs:
    """Whole shares and units for a gross notional (see the module docstring)."""
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be finite and > 0 to size a pair, got {beta!r}")
    if not (math.isfinite(gross_notional_usd) and gross_notional_usd >= 0):
        raise ValueError(f"gross_notional_usd must be finite and >= 0, got {gross_notional_usd!r}")
    per_buy_write_share = tlt_mid - call_mid
    if per_buy_write_share <= 0:
        raise ValueError(f"buy-write value {per_buy_write_share!r} must be > 0")
    tltw_usd = gross_notional_usd / (1.0 + beta)
    return PairLegs(
        direction=direction,
        tltw_shares=round(tltw_usd / tltw_mid),
        buy_write_units=round(tltw_usd * beta / (SHARES_PER_UNIT * per_buy_write_share)),
        call_con_id=call_con_id,
        call_expiry=call_expiry,
        call_strike=call_strike,
    )


def intent_id(pair_id: str, purpose: IntentPurpose, bar_end_ts: float) -> str:
    return f"{pair_id}-{purpose.value}-{round(bar_end_ts)}"


@dataclass(frozen=True, slots=True)
class LegMids:
    """The mids an intent's limit prices are set from: the underlying, the ETF and the call."""

    tlt: float
    tltw: float
    call: float


def pair_intent(
    *,
    pair: EngineConfig,
    purpose: IntentPurpose,
    action: SignalAction,
    legs: PairLegs,
    opening: bool,
    bar_end_ts: float,
    mids: LegMids,
    offset_bp: float,
    why: dict[str, Any],
) -> OrderIntent:
    """The intent that opens ``legs`` (``opening``) or closes them (the reverse sides); a leg
    of zero size (a close of a pair whose entry filled one leg only) is left out."""
    long_spread = legs.direction is SpreadPosition.LONG_SPREAD
    buys_tltw = long_spread == opening
    tltw_side = Side.BUY if buys_tltw else Side.SELL
    buy_write_side = Side.SELL if buys_tltw else Side.BUY
    unit_mid = buy_write_unit_mid(mids.tlt, mids.call)
    return OrderIntent(
        intent_id=intent_id(pair.pair_id, purpose, bar_end_ts),
        pair_id=pair.pair_id,
        ts=bar_end_ts,
        purpose=purpose,
        action=action,
        legs=tuple(
            leg
            for leg in (
                IntentLeg(
                    kind=LegKind.BUY_WRITE,
                    symbol=pair.underlying,
                    side=buy_write_side,
                    quantity=legs.buy_write_units,
                    limit_price=limit_price(unit_mid, buy_write_side, offset_bp),
                    con_id=pair.tlt_con_id,
                    option_con_id=legs.call_con_id,
                    option_expiry=legs.call_expiry,
                    option_strike=legs.call_strike,
                ),
                IntentLeg(
                    kind=LegKind.STOCK,
                    symbol=pair.etf,
                    side=tltw_side,
                    quantity=legs.tltw_shares,
                    limit_price=limit_price(mids.tltw, tltw_side, offset_bp),
                    con_id=pair.tltw_con_id,
                ),
            )
            if leg.quantity > 0
        ),
        why=why,
    )
