"""The risk gate: one decision per order intent, with every reason it was refused.

Pure: `RiskGate(limits).decide(intent, view, now) -> RiskDecision` (the bus message), where
`view` is a `GateView` of the live book (positions, working orders, marks and Greeks, the day's
P&L, the trading state). No I/O, no clock reads: `now` is wall time (epoch s) and the market
clock is the latest exchange timestamp in the marks.

The rules are the quant core's `trading.domain.risk.check_order`; this module builds its inputs
from the live book and maps the settings onto its limits:

* The whole intent is checked as ONE combined order (quantity 1, leg ratios = the signed
  shares/contracts of every leg: BUY u buy-write units -> TLT +100u, call -u; SELL q TLTW ->
  TLTW -q), so position, gross, delta, vega, reduce-only and daily-loss rules see both legs
  together. The price band is checked per intent leg (the BAG against 100 S - C, TLTW against
  its mid), so one leg's error cannot hide behind the other's.
* Positions are the book's net positions plus every working order as if filled: a second
  intent cannot slip past a limit while the first is still working, and an exit cannot be sent
  twice (the second would cross zero, which REDUCING refuses).
* Leg keys are conIds as text. Limits: TLT max_buy_write_units x 100 shares, each call
  max_buy_write_units contracts, TLTW max_tltw_shares; price band price_band_bp / 10^4 of the
  leg's gross value per unit (domain convention).
* Deltas per share in TLT shares: TLT 1, a call its delta, TLTW
  d = beta x P_tltw / (S - C) x (1 - delta_C), its TLT delta through the hedged buy-write index
  (beta from the latest SpreadPoint, 1 if none; C the index's call, else the intent's), an
  approximation. Vega per share in USD per vol point: a call's IB vega; TLTW's embedded short
  call is not counted.
* Order rate: the domain rejects when `max` orders were sent in the window; an intent of n legs
  is counted by adding n - 1 sends at `now`, so sent + n <= max_orders_per_minute passes.
* Quote age is wall-clock: each quote's time is shifted so that exchange-now minus quote time
  equals wall-now minus its receive time.
* HALTED admits the risk service's own FLATTEN/UNWIND/STOP intents when they shrink exposure:
  they are checked as if the state were REDUCING. Halting must never stop us getting out.
* `check_market_hours=False` drops MARKET_CLOSED (demos on a clock outside the session).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from trading.bus import (
    DataHealth,
    DataStatus,
    IntentLeg,
    IntentPurpose,
    LegKind,
    OrderIntent,
    RiskDecision,
    RiskReason,
    Side,
    SignalAction,
    decode,
)
from trading.domain import risk as domain_risk
from trading.domain.market_hours import MarketCalendar, market_calendar
from trading.domain.pair import DEFAULT_UNDERLYING, PairSpec
from trading.domain.risk import RiskCode, TradingState
from trading.execution.book import Book
from trading.execution.marks import BUY_WRITE_SHARES, Marks
from trading.execution.tracking import OrderTracker

if TYPE_CHECKING:
    from trading.settings import RiskSettings

COMBINED_RULES = tuple(r for r in domain_risk.RULES if r is not domain_risk.price_band)
"""The rules the whole intent is checked against as one combined order: all but the price band
(a combined limit price would let one leg's error hide behind the other's)."""
COMBINED_RULES_ANY_HOUR = tuple(r for r in COMBINED_RULES if r is not domain_risk.market_hours)
"""The same without market hours (`check_market_hours=False`: demos outside the session)."""
LEG_RULES = (domain_risk.price_band,)
"""The rule each leg is checked against alone (skipped, like every rule that values a leg,
when a quote is stale: the combined order reports that)."""

__all__ = [
    "INVALID",
    "RISK_MADE_PURPOSES",
    "GateView",
    "RiskGate",
    "data_names",
    "flagged_at_send",
    "flagged_data",
    "intent_exposure",
    "leg_exposure",
    "risk_limits",
]

RISK_MADE_PURPOSES = frozenset({IntentPurpose.FLATTEN, IntentPurpose.UNWIND, IntentPurpose.STOP})
ORDER_RATE_WINDOW_S = 60.0
INVALID = "INVALID"
"""Reason code of an intent that cannot be evaluated at all (no legs, bad quantity, ...)."""


@dataclass
class GateView:
    """What the gate looks at: the live book, working orders, marks, the day's P&L, the state."""

    book: Book
    tracker: OrderTracker
    marks: Marks
    state: TradingState
    daily_pnl_usd: float


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


def risk_limits(
    s: RiskSettings,
    option_con_ids: set[int],
    stock_ids: dict[str, int],
    underlying: str = DEFAULT_UNDERLYING,
) -> domain_risk.RiskLimits:
    """The domain limits for these settings and the instruments in play: ``underlying`` (the
    pair's stock the calls are written on) is limited in buy-write units x 100 shares, any
    other stock (the ETF) in max_tltw_shares."""
    max_position = {str(c): float(s.max_buy_write_units) for c in option_con_ids}
    if underlying in stock_ids:
        max_position[str(stock_ids[underlying])] = float(s.max_buy_write_units * BUY_WRITE_SHARES)
    for symbol, con_id in stock_ids.items():
        if symbol != underlying:
            max_position[str(con_id)] = float(s.max_tltw_shares)
    return domain_risk.RiskLimits(
        max_position=max_position,
        max_gross_notional_usd=s.max_gross_notional_usd,
        max_order_quantity=1e12,
        max_order_notional_usd=s.max_order_notional_usd,
        price_band_fraction=s.price_band_bp / 1e4,
        max_net_delta_shares=s.max_net_delta_shares,
        max_net_vega_usd=s.max_net_vega_usd,
        max_orders_per_window=s.max_orders_per_minute,
        order_rate_window_seconds=ORDER_RATE_WINDOW_S,
        max_daily_loss_usd=s.daily_loss_limit_usd,
        max_quote_age_seconds=s.stale_after_s,
    )


class RiskGate:
    """Applies the domain rules to an intent and the live book; `limits` is settings.risk,
    `pair` the pair traded (its underlying and ETF symbols; default TLT/TLTW)."""

    def __init__(
        self,
        limits: RiskSettings,
        calendar: MarketCalendar | None = None,
        pair: PairSpec | None = None,
    ):
        self.limits = limits
        self.pair = pair if pair is not None else PairSpec()
        self._calendar = calendar
        self._limits_cache: dict[
            tuple[frozenset[int], tuple[tuple[str, int], ...]], domain_risk.RiskLimits
        ] = {}

    @property
    def calendar(self) -> MarketCalendar:
        if self._calendar is None:
            self._calendar = market_calendar()
        return self._calendar

    def decide(self, intent: OrderIntent, view: GateView, now: float) -> RiskDecision:
        reasons = self.reasons(intent, view, now)
        return RiskDecision(intent.intent_id, now, not reasons, tuple(reasons))

    def reasons(self, intent: OrderIntent, view: GateView, now: float) -> list[RiskReason]:
        problems = [f"legs[{i}]: {p}" for i, leg in enumerate(intent.legs) if (p := _problem(leg))]
        if not intent.legs:
            problems.append("intent has no legs")
        if problems:
            return [RiskReason(INVALID, p) for p in problems]

        marks = view.marks
        exchange_now = marks.exchange_time if marks.exchange_time > 0 else now
        moment = datetime.fromtimestamp(exchange_now, UTC)
        projected = self.projected_positions(view)
        changes = intent_exposure(intent.legs)
        instruments = self.instruments(view, intent, projected, set(changes), exchange_now, now)
        state = view.state
        if state is TradingState.HALTED and intent.purpose in RISK_MADE_PURPOSES:
            state = TradingState.REDUCING
        sent = view.tracker.orders_sent_since(now - ORDER_RATE_WINDOW_S)
        times = [moment] * (sent + len(intent.legs) - 1)
        book = domain_risk.BookSnapshot(
            instruments, view.daily_pnl_usd, tuple(times), state, moment
        )
        options = {leg.option_con_id for leg in intent.legs if leg.option_con_id}
        options |= {c for c, m in marks.by_con_id.items() if m.expiry}
        stock_ids = dict(marks.con_id_by_symbol)
        for leg in intent.legs:
            stock_ids.setdefault(leg.symbol, leg.con_id)
        cache_key = (frozenset(options), tuple(sorted(stock_ids.items())))
        limits = self._limits_cache.get(cache_key)
        if limits is None:
            if len(self._limits_cache) > 64:
                self._limits_cache.clear()
            limits = self._limits_cache[cache_key] = risk_limits(
                self.limits, options, stock_ids, self.pair.underlying
            )

        combined = domain_risk.OrderRequest(
            legs=tuple(domain_risk.OrderLeg(str(c), _ratio(q)) for c, q in changes.items() if q),
            side=Side.BUY,
            quantity=1.0,
            limit_price=math.fsum(_signed_value(leg) for leg in intent.legs),
        )
        rules = COMBINED_RULES if self.limits.check_market_hours else COMBINED_RULES_ANY_HOUR
        out = list(domain_risk.check_order(combined, book, limits, self.calendar, rules).reasons)
        for i, leg in enumerate(intent.legs):
            request = domain_risk.OrderRequest(
                legs=tuple(
                    domain_risk.OrderLeg(str(c), _ratio(q / leg.quantity))
                    for c, q in leg_exposure(_as_buy(leg)).items()
                ),
                side=leg.side,
                quantity=float(leg.quantity),
                limit_price=leg.limit_price,
            )
            band = domain_risk.check_order(request, book, limits, self.calendar, LEG_RULES)
            out += [
                domain_risk.RiskReason(r.code, f"legs[{i}] {leg.symbol}: {r.message}")
                for r in band.reasons
            ]
        reasons = [RiskReason(str(r.code), r.message) for r in out]
        return reasons + flagged_data(data_names(intent), marks.health)

    @staticmethod
    def projected_positions(view: GateView) -> dict[int, float]:
        """Book net positions plus every working order as if filled (signed)."""
        out = view.book.net_quantities()
        for t in view.tracker.open_legs():
            for c, q in leg_exposure(t.leg).items():
                out[c] = out.get(c, 0.0) + q * t.open_quantity / t.leg.quantity
        return out

    def instruments(
        self,
        view: GateView,
        intent: OrderIntent,
        positions: dict[int, float],
        in_order: set[int],
        exchange_now: float,
        now: float,
    ) -> dict[str, domain_risk.InstrumentRisk]:
        """Every instrument held or traded, as the domain rules see it."""
        marks = view.marks
        tltw_delta = self.tltw_delta(marks, intent)
        out = {}
        held = {c for c, q in positions.items() if abs(q) > 1e-9}
        for con_id in held | in_order:
            mark = marks.get(con_id)
            if mark is None:
                if con_id in in_order:
                    continue  # the domain reports the missing quote as STALE_DATA
                out[str(con_id)] = self._unmarked(view.book, con_id, positions[con_id])
                continue
            if mark.expiry:  # an option
                delta, vega, multiplier = mark.delta, mark.vega_per_point, 100.0
            elif mark.symbol == self.pair.underlying:
                delta, vega, multiplier = 1.0, 0.0, 1.0
            else:
                delta, vega, multiplier = tltw_delta, 0.0, 1.0
            quote_time = datetime.fromtimestamp(exchange_now - (now - mark.ts_recv), UTC)
            out[str(con_id)] = domain_risk.InstrumentRisk(
                key=str(con_id),
                position=positions.get(con_id, 0.0),
                bid=mark.bid,
                ask=mark.ask,
                quote_time=quote_time,
                multiplier=multiplier,
                delta=delta,
                vega=vega,
            )
        return out

    def measures(self, view: GateView, intent: OrderIntent | None = None) -> dict[str, float]:
        """Gross notional (USD), net delta (TLT shares) and net vega (USD/point) of the book."""
        dummy = intent or OrderIntent("status", "", 0.0, IntentPurpose.ENTRY, SignalAction.NONE, ())
        now = view.marks.exchange_time
        instruments = self.instruments(view, dummy, view.book.net_quantities(), set(), now, now)
        gross = math.fsum(abs(i.position) * i.mid * i.multiplier for i in instruments.values())
        delta = math.fsum(i.position * i.delta * i.multiplier for i in instruments.values())
        vega = math.fsum(i.position * i.vega * i.multiplier for i in instruments.values())
        return {"gross_notional_usd": gross, "net_delta_shares": delta, "net_vega_usd": vega}

    def usage(self, view: GateView, marks: dict[int, float], now: float) -> dict[str, float]:
        """Each limit's use, its measure over the limit (1.0 = at the limit), for the risk
        status; ``marks`` are the mids by conId the pairs' P&L is marked at."""
        lim = self.limits
        measures = self.measures(view)
        gross = measures["gross_notional_usd"]
        net_delta, net_vega = measures["net_delta_shares"], measures["net_vega_usd"]
        book = view.book
        tlt_id = view.marks.con_id_by_symbol.get(self.pair.underlying)
        tltw_id = view.marks.con_id_by_symbol.get(self.pair.etf)
        units = abs(book.quantity(tlt_id)) / 100 if tlt_id else 0.0
        shares = abs(book.quantity(tltw_id)) if tltw_id else 0.0
        worst_pair = min((book.pair_pnl(p, marks)["total"] for p in book.open_pairs()), default=0.0)
        return {
            "buy_write_units": units / lim.max_buy_write_units,
            "tltw_shares": shares / lim.max_tltw_shares,
            "gross_notional": gross / lim.max_gross_notional_usd,
            "net_delta": abs(net_delta) / lim.max_net_delta_shares,
            "net_vega": abs(net_vega) / lim.max_net_vega_usd,
            "order_rate": view.tracker.orders_sent_since(now - 60.0) / lim.max_orders_per_minute,
            "daily_loss": max(-view.daily_pnl_usd, 0.0) / lim.daily_loss_limit_usd,
            "pair_stop_loss": max(-worst_pair, 0.0) / lim.pair_stop_loss_usd,
        }

    @staticmethod
    def _unmarked(book: Book, con_id: int, position: float) -> domain_risk.InstrumentRisk:
        """A held instrument with no quote: valued at its average cost, an option at delta 0.5
        (at the money) and no vega; it only enters the book totals, never the order's legs."""
        meta = book.meta.get(con_id)
        is_option = meta is not None and meta.sec_type == "OPT"
        price = 0.0
        for pair_book in book.books.values():
            p = pair_book.position(str(con_id))
            if p is not None and p.average_price > 0:
                price = p.average_price
        price = price or 0.01
        return domain_risk.InstrumentRisk(
            key=str(con_id),
            position=position,
            bid=price,
            ask=price,
            quote_time=None,
            multiplier=100.0 if is_option else 1.0,
            delta=0.5 if is_option else 1.0,
        )

    def tltw_delta(self, marks: Marks, intent: OrderIntent) -> float:
        """Underlying-share delta of one ETF share (see the module docstring)."""
        spread = marks.spread
        beta = spread.beta if spread is not None and math.isfinite(spread.beta) else 1.0
        call_id = spread.call_con_id if spread is not None else 0
        if marks.get(call_id) is None:
            call_id = next((leg.option_con_id or 0 for leg in intent.legs if leg.option_con_id), 0)
        tlt = marks.get(marks.con_id_by_symbol.get(self.pair.underlying, 0))
        tltw = marks.get(marks.con_id_by_symbol.get(self.pair.etf, 0))
        call = marks.get(call_id)
        if tlt is None or tltw is None:
            return 0.0
        call_mid = call.mid if call else 0.0
        call_delta = call.delta if call else 0.5
        index = tlt.mid - call_mid
        if index <= 0:
            return 0.0
        return beta * tltw.mid / index * (1.0 - call_delta)


def data_names(intent: OrderIntent) -> list[str]:
    """The data-health names (data-ingestion's, in md:health) of every instrument the intent's
    legs trade: each leg's stock by symbol, a buy-write's call by its conId."""
    names = {leg.symbol for leg in intent.legs}
    names |= {str(leg.option_con_id) for leg in intent.legs if leg.option_con_id}
    return sorted(names)


def flagged_data(names: list[str], health: Mapping[str, DataHealth]) -> list[RiskReason]:
    """STALE_DATA for each of `names` whose data health is not OK (stale or delayed); a name
    with no health record is not flagged (data-ingestion has said nothing against it)."""
    return [
        RiskReason(str(RiskCode.STALE_DATA), f"{name}: data {h.status}: {h.reason}")
        for name in names
        if (h := health.get(name)) is not None and h.status is not DataStatus.OK
    ]


def flagged_at_send(names: list[str], raw: Mapping[str, bytes]) -> list[RiskReason]:
    """`flagged_data` on md:health's encoded records as read at the moment of sending; a
    record that cannot be read is flagged too (data that cannot be vouched for)."""
    health: dict[str, DataHealth] = {}
    out = []
    for name, data in raw.items():
        try:
            health[name] = decode(data, DataHealth)
        except ValueError as exc:
            out.append(
                RiskReason(str(RiskCode.STALE_DATA), f"{name}: data health unreadable: {exc}")
            )
    flagged = flagged_data(names, health)
    return [RiskReason(r.code, f"{r.message} (at the moment of sending)") for r in flagged] + out


def _ratio(q: float) -> int:
    r = round(q)
    if abs(r - q) > 1e-9:
        raise ValueError(f"leg quantity must be whole, got {q!r}")
    return int(r)


def _as_buy(leg: IntentLeg) -> IntentLeg:
    """The leg with side BUY (the domain's OrderRequest carries the side apart from ratios)."""
    return replace(leg, side=Side.BUY)


def _signed_value(leg: IntentLeg) -> float:
    """The leg's limit value in the combined order: +quantity x limit for a BUY, - for a SELL."""
    sign = 1.0 if leg.side is Side.BUY else -1.0
    return sign * leg.quantity * leg.limit_price


def _problem(leg: IntentLeg) -> str:
    if leg.quantity <= 0:
        return f"quantity must be positive, got {leg.quantity!r}"
    if not math.isfinite(leg.limit_price) or leg.limit_price <= 0:
        return f"limit_price must be finite and > 0, got {leg.limit_price!r}"
    if leg.kind is LegKind.BUY_WRITE and not leg.option_con_id:
        return "option_con_id is required for a buy-write leg"
    if leg.con_id <= 0:
        return f"con_id must be positive, got {leg.con_id!r}"
    return ""
