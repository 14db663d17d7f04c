"""IB contracts and orders for an order intent: the BAG buy-write and TLTW shares (pure).

One intent leg becomes one IB order, and the intent id becomes its `orderRef`:

* BUY_WRITE leg: one BAG combo `Contract(secType='BAG', symbol='TLT', comboLegs=[BUY 100 TLT,
  SELL 1 call])` with the order flagged `NonGuaranteed=1` in `smartComboRoutingParams` (IB
  requires it for a stock + option combo routed through SMART). `action` BUY buys the buy-write
  (buys the TLT, sells the call); SELL sells it (sells the TLT, buys the call back). The
  limit price is per combo unit in IB's convention, sum of ratio x leg price with the option
  price per share: 100 x S - C.
* STOCK leg: a TLTW (or TLT) share order, limit price per share.

Every order is a DAY limit order: a market order on a thin combo can fill anywhere, and the
risk gate checks the limit against a price band around the mid before anything is sent.
Prices are rounded to the cent (IB rejects sub-penny limits above $1).

The builders take the client library module (`ib_async` by default, or `ib_insync`, whose
classes have the same names and fields) so one code path serves both clients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import ib_async

from trading.bus import IntentLeg, LegKind, OrderIntent, Side
from trading.domain.pair import DEFAULT_UNDERLYING

__all__ = [
    "BAG_CON_ID",
    "BUY_WRITE_SHARES_PER_UNIT",
    "OPTION_MULTIPLIER",
    "LegOrder",
    "buy_write_contract",
    "limit_order",
    "orders_for_intent",
    "round_price",
    "stock_contract",
]

BUY_WRITE_SHARES_PER_UNIT = 100
"""TLT shares in one buy-write unit (one call covers 100 shares)."""
OPTION_MULTIPLIER = 100
BAG_CON_ID = 28812380
"""The conId IB puts on every BAG contract it echoes back (openOrder, executions)."""
PRICE_TICK_USD = 0.01


@dataclass(frozen=True, slots=True)
class LegOrder:
    """One IB order of an intent: which leg it is, the contract, and the order (unsent)."""

    leg_index: int
    leg: IntentLeg
    contract: Any  # ib_async.Contract (or ib_insync's)
    order: Any  # ib_async.Order


def round_price(price_usd: float, field_name: str = "limit_price") -> float:
    """Round a limit price to the cent; refuse NaN, infinities and non-positive prices."""
    if not isinstance(price_usd, int | float) or not math.isfinite(price_usd) or price_usd <= 0:
        raise ValueError(f"{field_name} must be a finite positive price, got {price_usd!r}")
    return round(round(price_usd / PRICE_TICK_USD) * PRICE_TICK_USD, 2)


def stock_contract(symbol: str, con_id: int, lib: ModuleType = ib_async) -> Any:
    """A SMART-routed US stock/ETF contract identified by conId (no qualification round-trip)."""
    if con_id <= 0:
        raise ValueError(f"con_id of {symbol} must be positive, got {con_id!r}")
    return lib.Contract(
        conId=con_id, symbol=symbol, secType="STK", exchange="SMART", currency="USD"
    )


def buy_write_contract(
    stock_con_id: int,
    call_con_id: int,
    symbol: str = DEFAULT_UNDERLYING,
    lib: ModuleType = ib_async,
) -> Any:
    """The BAG: BUY 100 shares + SELL 1 call per unit (a covered call as one combo)."""
    if stock_con_id <= 0:
        raise ValueError(f"con_id must be positive, got {stock_con_id!r}")
    if call_con_id <= 0:
        raise ValueError(f"option_con_id must be positive, got {call_con_id!r}")
    return lib.Contract(
        secType="BAG",
        symbol=symbol,
        exchange="SMART",
        currency="USD",
        comboLegs=[
            lib.ComboLeg(
                conId=stock_con_id,
                ratio=BUY_WRITE_SHARES_PER_UNIT,
                action="BUY",
                exchange="SMART",
            ),
            lib.ComboLeg(conId=call_con_id, ratio=1, action="SELL", exchange="SMART"),
        ],
    )


def limit_order(
    side: Side,
    quantity: int,
    limit_price_usd: float,
    order_ref: str,
    *,
    combo: bool = False,
    account: str = "",
    lib: ModuleType = ib_async,
) -> Any:
    """A DAY limit order carrying `order_ref`; combos get NonGuaranteed=1 routing."""
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise ValueError(f"quantity must be a positive integer, got {quantity!r}")
    if not order_ref:
        raise ValueError(f"order_ref must be non-empty, got {order_ref!r}")
    order = lib.LimitOrder(
        str(Side(side)),
        quantity,
        round_price(limit_price_usd),
        orderRef=order_ref,
        tif="DAY",
        account=account,
    )
    if combo:
        order.smartComboRoutingParams = [lib.TagValue("NonGuaranteed", "1")]
    return order


def _check_leg(index: int, leg: IntentLeg) -> None:
    prefix = f"legs[{index}]"
    if leg.quantity <= 0:
        raise ValueError(f"{prefix}.quantity must be positive, got {leg.quantity!r}")
    round_price(leg.limit_price, f"{prefix}.limit_price")
    if leg.kind is LegKind.BUY_WRITE and not leg.option_con_id:
        raise ValueError(f"{prefix}.option_con_id is required for a buy-write leg, got None")


def orders_for_intent(
    intent: OrderIntent, account: str = "", lib: ModuleType = ib_async
) -> list[LegOrder]:
    """The IB orders of an intent, one per leg, each with orderRef = intent_id.

    Raises ValueError naming the leg field when a leg cannot be sent as it is.
    """
    if not intent.legs:
        raise ValueError(f"intent {intent.intent_id!r} has no legs")
    out = []
    for i, leg in enumerate(intent.legs):
        _check_leg(i, leg)
        if leg.kind is LegKind.BUY_WRITE:
            assert leg.option_con_id is not None
            contract = buy_write_contract(leg.con_id, leg.option_con_id, leg.symbol, lib)
            order = limit_order(
                leg.side,
                leg.quantity,
                leg.limit_price,
                intent.intent_id,
                combo=True,
                account=account,
                lib=lib,
            )
        else:
            contract = stock_contract(leg.symbol, leg.con_id, lib)
            order = limit_order(
                leg.side, leg.quantity, leg.limit_price, intent.intent_id, account=account, lib=lib
            )
        out.append(LegOrder(i, leg, contract, order))
    return out
