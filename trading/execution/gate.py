"""The risk gate: one decision per order intent, with every reason it was refused.

Pure: `RiskGate(limits).decide(intent, view, now) -> RiskDecision`, where `view` is a
`GateView` of the live book (positions, open orders, marks and Greeks, the day's P&L, the
trading state). No I/O, no clock reads: `now` is wall time (epoch s, for staleness and the order
rate) and the market-hours clock is the latest exchange timestamp in the marks.

Exposure of an intent, instrument by instrument (signed, shares or contracts):
  BUY_WRITE BUY u  -> stock +100u, call -u;   BUY_WRITE SELL u -> stock -100u, call +u;
  STOCK BUY q      -> +q;                     STOCK SELL q     -> -q.
"After" = the book's net position + the same-direction rest of working orders + the intent
(worst case). An order *reduces* when no instrument's |position| grows.

Rules (codes are `RiskCode`); a limit is only enforced on an order that makes its measure
worse, so an order that shrinks a breach always passes:
  HALTED        state HALTED admits only the risk service's own reducing intents
                (purpose FLATTEN, UNWIND, STOP);
  REDUCE_ONLY   state REDUCING admits only reducing intents;
  POSITION_LIMIT |stock of a buy-write| / 100 <= max_buy_write_units;
                |shares of a STOCK leg| <= max_tltw_shares;
  GROSS_NOTIONAL sum |q| x mid x multiplier over the book after the order <= max_gross;
  ORDER_SIZE    sum over legs of quantity x limit price <= max_order_notional_usd
                (a BAG limit is already per unit of 100 shares);
  PRICE_BAND    |limit / mid - 1| <= price_band_bp / 10^4 for every leg (BAG mid = 100 S - C);
  NET_DELTA     |TLT shares + 100 x sum calls x delta + TLTW shares x d_tltw| <= max (shares);
                d_tltw = beta x P_tltw / (S - C) x (1 - delta_C), TLTW's TLT-share delta per
                share through the hedged buy-write index (beta from the latest SpreadPoint,
                1 if none; C the index's call, else the intent's); an approximation;
  NET_VEGA      |100 x sum calls x vega_per_point| <= max_net_vega_usd (USD per vol point;
                TLTW's embedded short call is not counted);
  ORDER_RATE    orders sent in the last 60 s + legs of this intent <= max_orders_per_minute;
  DAILY_LOSS    a non-reducing order is refused once the day's P&L <= -daily_loss_limit_usd;
  STALE_DATA    each instrument of the intent quoted within stale_after_s (wall time) and its
                DataHealth OK;
  MARKET_CLOSED the exchange time of the marks is inside an XNYS regular session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from trading.bus import (
    IntentLeg,
    IntentPurpose,
    LegKind,
    OrderIntent,
    RiskDecision,
    RiskReason,
    Side,
)
from trading.domain.market_hours import MarketCalendar, market_calendar
from trading.execution.book import Book
from trading.execution.marks import BUY_WRITE_SHARES, Marks
from trading.execution.state import TradingState
from trading.execution.tracking import OrderTracker
from trading.settings import RiskSettings

__all__ = ["RISK_MADE_PURPOSES", "GateView", "RiskCode", "RiskGate", "intent_exposure"]

RISK_MADE_PURPOSES = frozenset({IntentPurpose.FLATTEN, IntentPurpose.UNWIND, IntentPurpose.STOP})
ORDER_RATE_WINDOW_S = 60.0


class RiskCode(StrEnum):
    POSITION_LIMIT = "POSITION_LIMIT"
    GROSS_NOTIONAL = "GROSS_NOTIONAL"
    ORDER_SIZE = "ORDER_SIZE"
    PRICE_BAND = "PRICE_BAND"
    NET_DELTA = "NET_DELTA"
    NET_VEGA = "NET_VEGA"
    ORDER_RATE = "ORDER_RATE"
    DAILY_LOSS = "DAILY_LOSS"
    STALE_DATA = "STALE_DATA"
    MARKET_CLOSED = "MARKET_CLOSED"
    HALTED = "HALTED"
    REDUCE_ONLY = "REDUCE_ONLY"
    INVALID = "INVALID"


@dataclass
class GateView:
    """What the gate looks at: the live book, working orders, marks, the day's P&L, the state."""

    book: Book
    tracker: OrderTracker
    marks: Marks
    state: TradingState
    daily_pnl_usd: float
    stock_con_ids: frozenset[int] = field(default_factory=frozenset)


def leg_exposure(leg: IntentLeg) -> dict[int, float]:
    """Signed position change of one leg by conId (shares, or contracts for the call)."""
    sign = 1.0 if leg.side is Side.BUY else -1.0
    if leg.kind is LegKind.BUY_WRITE:
        if not leg.option_con_id:
            raise ValueError("option_con_id is required for a buy-write leg, got None")
        return {
            leg.con_id: sign * BUY_WRITE_SHARES * leg.quantity,
            leg.option_con_id: -sign * leg.quantity,
        }
    return {leg.con_id: sign * leg.quantity}


def intent_exposure(legs: tuple[IntentLeg, ...]) -> dict[int, float]:
    out: dict[int, float] = {}
    for leg in legs:
        for con_id, q in leg_exposure(leg).items():
            out[con_id] = out.get(con_id, 0.0) + q
    return out


def _leg_mid(leg: IntentLeg, marks: Marks) -> float | None:
    if leg.kind is LegKind.BUY_WRITE:
        assert leg.option_con_id is not None
        return marks.buy_write_mid(leg.con_id, leg.option_con_id)
    return marks.mid(leg.con_id)


class RiskGate:
    """Applies the rules above; `limits` is the risk settings group."""

    def __init__(self, limits: RiskSettings, calendar: MarketCalendar | None = None):
        self.limits = limits
        self._calendar = calendar

    @property
    def calendar(self) -> MarketCalendar:
        if self._calendar is None:
            self._calendar = market_calendar()
        return self._calendar

    def decide(self, intent: OrderIntent, view: GateView, now: float) -> RiskDecision:
        reasons = self.reasons(intent, view, now)
        return RiskDecision(intent.intent_id, now, not reasons, tuple(reasons))

    def reasons(self, intent: OrderIntent, view: GateView, now: float) -> list[RiskReason]:
        lim = self.limits
        out: list[RiskReason] = []

        def add(code: RiskCode, message: str) -> None:
            out.append(RiskReason(str(code), message))

        if not intent.legs:
            add(RiskCode.INVALID, "intent has no legs")
            return out
        for i, leg in enumerate(intent.legs):
            problem = _leg_problem(leg)
            if problem:
                add(RiskCode.INVALID, f"legs[{i}]: {problem}")
        if out:
            return out

        delta = intent_exposure(intent.legs)
        book, marks = view.book, view.marks
        before = {c: book.quantity(c) for c in delta}
        after = {c: before[c] + delta[c] for c in delta}
        reduces = all(abs(after[c]) <= abs(before[c]) + 1e-9 for c in delta)

        # state
        if view.state is TradingState.HALTED and not (
            reduces and intent.purpose in RISK_MADE_PURPOSES
        ):
            add(RiskCode.HALTED, "trading is HALTED: only the risk service's reducing orders")
        elif view.state is TradingState.REDUCING and not reduces:
            add(RiskCode.REDUCE_ONLY, "trading is REDUCING: this order would grow a position")

        # worst case with working orders in the same direction
        worst = dict(after)
        for t in view.tracker.open_legs():
            for c, q in leg_exposure(t.leg).items():
                if c in worst and (q > 0) == (delta[c] > 0):
                    worst[c] += q * t.open_quantity / t.leg.quantity

        # position limits
        for leg in intent.legs:
            c = leg.con_id
            if abs(after[c]) <= abs(before[c]):
                continue
            if leg.kind is LegKind.BUY_WRITE:
                units = abs(worst[c]) / BUY_WRITE_SHARES
                if units > lim.max_buy_write_units:
                    add(
                        RiskCode.POSITION_LIMIT,
                        f"{leg.symbol} buy-write units after the order (with working orders) "
                        f"{units:g} exceed {lim.max_buy_write_units}",
                    )
            elif abs(worst[c]) > lim.max_tltw_shares:
                add(
                    RiskCode.POSITION_LIMIT,
                    f"{leg.symbol} shares after the order (with working orders) "
                    f"{abs(worst[c]):g} exceed {lim.max_tltw_shares}",
                )

        # order size and price band
        order_notional = sum(leg.quantity * leg.limit_price for leg in intent.legs)
        if order_notional > lim.max_order_notional_usd:
            add(
                RiskCode.ORDER_SIZE,
                f"order notional {order_notional:,.2f} USD exceeds "
                f"{lim.max_order_notional_usd:,.2f} USD",
            )
        for i, leg in enumerate(intent.legs):
            mid = _leg_mid(leg, marks)
            if mid is None or mid <= 0:
                add(RiskCode.STALE_DATA, f"legs[{i}] {leg.symbol}: no mid to check the price")
                continue
            off_bp = abs(leg.limit_price / mid - 1.0) * 1e4
            if off_bp > lim.price_band_bp:
                add(
                    RiskCode.PRICE_BAND,
                    f"legs[{i}] {leg.symbol} limit {leg.limit_price:.2f} is {off_bp:.1f} bp from "
                    f"mid {mid:.4f}, band {lim.price_band_bp:g} bp",
                )

        # book measures before and after
        gross_before, delta_before, vega_before = self.measures(book, marks, {}, intent)
        gross_after, delta_after, vega_after = self.measures(book, marks, delta, intent)
        if gross_after > lim.max_gross_notional_usd and gross_after > gross_before:
            add(
                RiskCode.GROSS_NOTIONAL,
                f"gross notional after the order {gross_after:,.2f} USD exceeds "
                f"{lim.max_gross_notional_usd:,.2f} USD",
            )
        if abs(delta_after) > lim.max_net_delta_shares and abs(delta_after) > abs(delta_before):
            add(
                RiskCode.NET_DELTA,
                f"net delta after the order {delta_after:,.1f} TLT shares exceeds "
                f"{lim.max_net_delta_shares:,.1f}",
            )
        if abs(vega_after) > lim.max_net_vega_usd and abs(vega_after) > abs(vega_before):
            add(
                RiskCode.NET_VEGA,
                f"net vega after the order {vega_after:,.2f} USD/vol point exceeds "
                f"{lim.max_net_vega_usd:,.2f}",
            )

        # order rate
        sent = view.tracker.orders_sent_since(now - ORDER_RATE_WINDOW_S)
        if sent + len(intent.legs) > lim.max_orders_per_minute:
            add(
                RiskCode.ORDER_RATE,
                f"{sent} orders in the last 60 s + {len(intent.legs)} would exceed "
                f"{lim.max_orders_per_minute} per minute",
            )

        # daily loss
        if view.daily_pnl_usd <= -lim.daily_loss_limit_usd and not reduces:
            add(
                RiskCode.DAILY_LOSS,
                f"day P&L {view.daily_pnl_usd:,.2f} USD is at or below the limit "
                f"-{lim.daily_loss_limit_usd:,.2f} USD",
            )

        # data freshness
        for con_id in delta:
            age = marks.age_s(con_id, now)
            mark = marks.get(con_id)
            name = mark.symbol if mark else str(con_id)
            if age is None:
                add(RiskCode.STALE_DATA, f"{name}: no quote")
            elif age > lim.stale_after_s:
                add(
                    RiskCode.STALE_DATA,
                    f"{name}: last quote {age:.1f} s old, limit {lim.stale_after_s:g} s",
                )
        for symbol in sorted({leg.symbol for leg in intent.legs}):
            health = marks.unhealthy(symbol)
            if health is not None:
                add(RiskCode.STALE_DATA, f"{symbol}: data {health.status}: {health.reason}")

        # market hours
        if lim.check_market_hours:
            ts = marks.exchange_time
            if ts <= 0:
                add(RiskCode.MARKET_CLOSED, "no exchange time seen yet")
            else:
                moment = datetime.fromtimestamp(ts, UTC)
                if not self.calendar.is_open(moment):
                    add(
                        RiskCode.MARKET_CLOSED,
                        f"market closed at exchange time {moment.isoformat()}",
                    )
        return out

    def measures(
        self, book: Book, marks: Marks, delta: dict[int, float], intent: OrderIntent
    ) -> tuple[float, float, float]:
        """(gross notional USD, net delta in TLT shares, net vega USD per vol point)."""
        qty: dict[int, float] = {c: h.quantity for c, h in book.net_holdings().items()}
        meta = {c: h for c, h in book.net_holdings().items()}
        for c, q in delta.items():
            qty[c] = qty.get(c, 0.0) + q
        option_ids = {leg.option_con_id for leg in intent.legs if leg.option_con_id}
        option_ids |= {c for c, h in meta.items() if h.sec_type == "OPT"}
        stock_of_bw = {leg.con_id for leg in intent.legs if leg.kind is LegKind.BUY_WRITE}
        tltw_delta = self._tltw_delta(marks, intent)
        gross = net_delta = net_vega = 0.0
        for c, q in qty.items():
            if abs(q) < 1e-12:
                continue
            mark = marks.get(c)
            is_option = c in option_ids
            multiplier = 100.0 if is_option else 1.0
            price = mark.mid if mark else (meta[c].avg_cost if c in meta else 0.0)
            gross += abs(q) * price * multiplier
            if is_option:
                d = mark.delta if mark else 0.5
                net_delta += q * 100.0 * d
                net_vega += q * 100.0 * (mark.vega_per_point if mark else 0.0)
            elif (
                c in stock_of_bw
                or (mark and mark.symbol == "TLT")
                or (c in meta and meta[c].symbol == "TLT")
            ):
                net_delta += q
            else:
                net_delta += q * tltw_delta
        return gross, net_delta, net_vega

    @staticmethod
    def _tltw_delta(marks: Marks, intent: OrderIntent) -> float:
        """TLT-share delta of one TLTW share (see the module docstring)."""
        spread = marks.spread
        beta = spread.beta if spread is not None and math.isfinite(spread.beta) else 1.0
        call_id = spread.call_con_id if spread is not None else 0
        if marks.get(call_id) is None:
            call_id = next((leg.option_con_id or 0 for leg in intent.legs if leg.option_con_id), 0)
        tlt_id = marks.con_id_by_symbol.get("TLT", 0)
        tltw_id = marks.con_id_by_symbol.get("TLTW", 0)
        tlt, tltw, call = marks.get(tlt_id), marks.get(tltw_id), marks.get(call_id)
        if tlt is None or tltw is None:
            return 0.0
        call_mid = call.mid if call else 0.0
        call_delta = call.delta if call else 0.5
        index = tlt.mid - call_mid
        if index <= 0:
            return 0.0
        return beta * tltw.mid / index * (1.0 - call_delta)


def _leg_problem(leg: IntentLeg) -> str:
    if leg.quantity <= 0:
        return f"quantity must be positive, got {leg.quantity!r}"
    if not math.isfinite(leg.limit_price) or leg.limit_price <= 0:
        return f"limit_price must be finite and > 0, got {leg.limit_price!r}"
    if leg.kind is LegKind.BUY_WRITE and not leg.option_con_id:
        return "option_con_id is required for a buy-write leg"
    if leg.con_id <= 0:
        return f"con_id must be positive, got {leg.con_id!r}"
    return ""
