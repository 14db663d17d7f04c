"""Market data subscriptions: which ticks to send for a stock, an option or a BAG, and when.

Every step a subscription sends only what changed (as TWS does): bid and ask as tickPrice
with their sizes, a new print as last + volume, the session's high and low, option model
Greeks (tick 13) and bid/ask Greeks (10/11, at the implied volatility of the bid and ask),
the ETF's NAV for the NAV generic ticks, and with every batch tickString 45 (the last timestamp,
sim epoch seconds). Delayed subscriptions (market data type 3 or 4) use IB's delayed tick
types and values from 15 minutes of trading time earlier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trading.ibsim.board import PriceGreeks, QuoteBoard
from trading.ibsim.broker import Leg
from trading.ibsim.instruments import Instrument
from trading.ibsim.market import OptionQuote
from trading.ibsim.protocol import frame_text

DELAY_SECONDS = 900.0
NAV_GENERIC_TICKS = {577: (96,), 578: (92, 93), 576: (94, 95), 614: (98, 99), 623: (97,)}
# live tick type -> delayed tick type
_DELAYED = {1: 66, 2: 67, 4: 68, 0: 69, 3: 70, 5: 71, 8: 74, 6: 72, 7: 73, 9: 75, 14: 76}
_DELAYED.update({10: 80, 11: 81, 12: 82, 13: 83, 45: 88})
NAN = float("nan")
_text = float.__repr__
"""A float's repr (also of a numpy float64, a float subclass whose own repr differs)."""


def tick_price(req_id: int, tick_type: int, price: float, size: float) -> bytes:
    return frame_text(f"1\x006\x00{req_id}\x00{tick_type}\x00{price!r}\x00{size!r}\x000\x00")


def tick_size(req_id: int, tick_type: int, size: float) -> bytes:
    return frame_text(f"2\x006\x00{req_id}\x00{tick_type}\x00{size!r}\x00")


def tick_string(req_id: int, tick_type: int, value: str) -> bytes:
    return frame_text(f"46\x006\x00{req_id}\x00{tick_type}\x00{value}\x00")


def tick_generic(req_id: int, tick_type: int, value: float) -> bytes:
    return frame_text(f"45\x006\x00{req_id}\x00{tick_type}\x00{value!r}\x00")


def tick_option(req_id: int, tick_type: int, values: tuple[float, ...]) -> bytes:
    """tickOptionComputation: iv, delta, price, pvDividend, gamma, vega, theta, underlying."""
    return _tick_option_fields(req_id, tick_type, "\x00".join(map(repr, map(float, values))))


def _tick_option_fields(req_id: int, tick_type: int, fields: str) -> bytes:
    return frame_text(f"21\x00{req_id}\x00{tick_type}\x001\x00{fields}\x00")


def market_data_type(req_id: int, data_type: int) -> bytes:
    return frame_text(f"58\x001\x00{req_id}\x00{data_type}\x00")


def tick_req_params(req_id: int) -> bytes:
    return frame_text(f"81\x00{req_id}\x000.01\x009c0001\x003\x00")


def snapshot_end(req_id: int) -> bytes:
    return frame_text(f"57\x001\x00{req_id}\x00")


def bad_quote(bid: float, ask: float, kind: str) -> tuple[float, float]:
    """The quote a 'nan' or 'crossed' fault shows instead of (bid, ask)."""
    if kind == "nan":
        return NAN, NAN
    return round(ask + 0.05, 2), ask


def distributions(board: QuoteBoard) -> str:
    """IB's dividend tick (59) for the ETF: 'past 12 months,next 12 months,next ex-date,amount'.

    The next amount is the declared estimate, the monthly yield on today's NAV (the exact one
    is set at the close before the ex-date, so announcing it would leak the future)."""
    model = board.model
    calendar = model.calendar
    session = board.snapshot.session
    today = calendar.dates[session]
    year_ago = today.replace(year=today.year - 1)
    first = max(calendar.session_on_or_before(year_ago) + 1, 0)
    past = sum(model.tltw_distribution(s) for s in range(first, session + 1))
    ex_session = session + 1
    while calendar.dates[ex_session].month == calendar.dates[ex_session - 1].month:
        ex_session += 1
    amount = model.config.tltw_distribution_yield_annual / 12.0 * board.snapshot.tltw_nav
    ex_date = calendar.dates[ex_session].strftime("%Y%m%d")
    return f"{past:.4f},{12 * amount:.4f},{ex_date},{amount:.4f}"


def option_computations(
    req_id: int,
    tick_types: tuple[int, int, int],
    option: OptionQuote,
    at_bid: PriceGreeks | None,
    at_ask: PriceGreeks | None,
) -> list[bytes]:
    """`tick_option` of the model values and at the bid and at the ask (``tick_types``: 13, 10
    and 11, or their delayed types), the Greeks at the implied volatility of each (IB's 'not
    computed', -1 and -2, at a price without one). The underlying and the PV of dividends are
    written once for the three."""
    spot, pv_dividend = _text(option.underlying), _text(option.pv_dividend)

    def fields(vol: float, delta: float, price: float, gamma: float, vega: float, theta: float):
        texts = (_text(vol), _text(delta), _text(price), pv_dividend)
        return "\x00".join((*texts, _text(gamma), _text(vega), _text(theta), spot))

    def at_price(price: float, greeks: PriceGreeks | None) -> str:
        if greeks is None:
            return f"-1.0\x00-2.0\x00{_text(price)}\x00-1.0\x00-2.0\x00-2.0\x00-2.0\x00{spot}"
        return fields(
            greeks.implied_vol,
            greeks.delta,
            price,
            greeks.gamma,
            greeks.vega_per_vol_point,
            greeks.theta_per_day,
        )

    model = fields(
        option.implied_vol,
        option.delta,
        option.theo,
        option.gamma,
        option.vega_per_vol_point,
        option.theta_per_day,
    )
    model_type, bid_type, ask_type = tick_types
    return [
        _tick_option_fields(req_id, model_type, model),
        _tick_option_fields(req_id, bid_type, at_price(option.quote.bid, at_bid)),
        _tick_option_fields(req_id, ask_type, at_price(option.quote.ask, at_ask)),
    ]


@dataclass(slots=True)
class Subscription:
    """One reqMktData stream (instrument is None for a BAG, described by ``legs``)."""

    req_id: int
    instrument: Instrument | None
    legs: tuple[Leg, ...]
    generic_ticks: frozenset[int]
    delayed: bool
    # The last value sent per tick key: a price, a (price, size) pair, a second, a session.
    sent: dict[int, Any] = field(default_factory=dict)
    day_high: float = -math.inf
    day_low: float = math.inf
    session: int = -1

    @property
    def options(self) -> tuple[Instrument, ...]:
        """The options this stream quotes (its own instrument, or its legs')."""
        if self.instrument is not None:
            return (self.instrument,) if self.instrument.is_option else ()
        return tuple(leg.instrument for leg in self.legs if leg.instrument.is_option)

    def tick_type(self, live: int) -> int:
        return _DELAYED.get(live, live) if self.delayed else live

    def ticks(self, board: QuoteBoard, fault: str | None = None, first: bool = False) -> bytes:
        """The encoded ticks of this step (all fields when ``first``); b'' if nothing changed."""
        out: list[bytes] = []
        snapshot = board.snapshot
        if snapshot.session != self.session:
            self.session = snapshot.session
            self.day_high, self.day_low = -math.inf, math.inf
        instrument = self.instrument
        if instrument is None:
            self._combo(board, out, fault)
        elif instrument.is_option:
            self._option(instrument, board, out, fault, first)
        else:
            self._stock(instrument, board, out, fault, first)
        if not out:
            return b""
        out.append(tick_string(self.req_id, self.tick_type(45), str(int(snapshot.epoch))))
        return b"".join(out)

    def _send(self, out: list[bytes], key: int, value: object, encoded) -> None:
        if self.sent.get(key) != value or value != value:  # NaN never equals itself: resend
            self.sent[key] = value
            out.append(encoded())

    def _quote(self, out: list[bytes], bid, ask, bid_size, ask_size, fault: str | None) -> None:
        if fault:
            bid, ask = bad_quote(bid, ask, fault)
        req, bid_type, ask_type = self.req_id, self.tick_type(1), self.tick_type(2)
        self._send(out, 1, (bid, bid_size), lambda: tick_price(req, bid_type, bid, bid_size))
        self._send(out, 2, (ask, ask_size), lambda: tick_price(req, ask_type, ask, ask_size))

    def _stock(
        self,
        instrument: Instrument,
        board: QuoteBoard,
        out: list[bytes],
        fault: str | None,
        first: bool,
    ) -> None:
        snapshot = board.snapshot
        is_tltw = instrument.con_id == board.model.registry.etf.con_id
        quote = snapshot.tltw if is_tltw else snapshot.tlt
        trade = snapshot.tltw_trade if is_tltw else snapshot.tlt_trade
        self._quote(out, quote.bid, quote.ask, quote.bid_size, quote.ask_size, fault)
        req = self.req_id
        if trade.size > 0 and (first or self.sent.get(4) != trade.second):
            self.sent[4] = trade.second
            out.append(tick_price(req, self.tick_type(4), trade.price, trade.size))
            out.append(tick_size(req, self.tick_type(8), trade.volume))
            if trade.price > self.day_high:
                self.day_high = trade.price
                out.append(tick_price(req, self.tick_type(6), trade.price, 0.0))
            if trade.price < self.day_low:
                self.day_low = trade.price
                out.append(tick_price(req, self.tick_type(7), trade.price, 0.0))
        if first:
            model = board.model
            # The session's range so far, from the model's path up to this second.
            if is_tltw:
                path = model.tltw_price_seconds(snapshot.session)[: snapshot.second + 1]
            else:
                path = np.exp(model.tlt_log_path(snapshot.session)[: snapshot.second + 1])
            self.day_high = max(self.day_high, round(float(path.max()), 2))
            self.day_low = min(self.day_low, round(float(path.min()), 2))
            out.append(tick_price(req, self.tick_type(6), self.day_high, 0.0))
            out.append(tick_price(req, self.tick_type(7), self.day_low, 0.0))
            out.append(tick_price(req, self.tick_type(14), round(float(path[0]), 2), 0.0))
            previous = max(snapshot.session - 1, 0)
            if is_tltw:
                close = float(model.tltw_price_seconds(previous)[-1])
            else:
                close = math.exp(model.tlt_log_path(previous)[-1])
            out.append(tick_price(req, self.tick_type(9), round(close, 2), 0.0))
            if 104 in self.generic_ticks:
                out.append(tick_generic(req, 23, model.config.tlt_vol_annual))
            if 106 in self.generic_ticks and not is_tltw:
                iv = model.implied_vol(snapshot.tlt_mid, snapshot.tlt_mid, 30 / 365)
                out.append(tick_generic(req, 24, iv))
        if is_tltw:
            self._nav(board, out, first)
            if 456 in self.generic_ticks and (first or self.sent.get(59) != snapshot.session):
                self.sent[59] = snapshot.session
                out.append(tick_string(req, 59, distributions(board)))

    def _nav(self, board: QuoteBoard, out: list[bytes], first: bool) -> None:
        """NAV ticks: last (96), frozen (97), bid/ask (94/95), high/low (98/99), closes (92/93)."""
        nav = round(board.snapshot.tltw_nav, 4)
        values = {96: nav, 97: nav, 94: round(nav - 0.005, 4), 95: round(nav + 0.005, 4)}
        if first:
            values[92] = values[93] = round(self._previous_nav(board), 4)
        values[98] = max(self.sent.get(1098, -math.inf), nav)
        values[99] = min(self.sent.get(1099, math.inf), nav)
        req = self.req_id
        for generic, tick_types in NAV_GENERIC_TICKS.items():
            if generic not in self.generic_ticks:
                continue
            for tick_type in tick_types:
                if tick_type in values:
                    value = values[tick_type]
                    self._send(
                        out,
                        1000 + tick_type,
                        value,
                        lambda t=tick_type, v=value: tick_price(req, t, v, 0.0),
                    )

    def _previous_nav(self, board: QuoteBoard) -> float:
        model = board.model
        session = max(board.snapshot.session - 1, 0)
        return float(model.tltw_nav_seconds(session)[-1])

    def _option(
        self,
        instrument: Instrument,
        board: QuoteBoard,
        out: list[bytes],
        fault: str | None,
        first: bool,
    ) -> None:
        option = board.option(instrument)
        quote = option.quote
        self._quote(out, quote.bid, quote.ask, quote.bid_size, quote.ask_size, fault)
        req = self.req_id
        key = round(option.underlying, 6)
        if first or self.sent.get(13) != key:
            self.sent[13] = key
            tick_types = (self.tick_type(13), self.tick_type(10), self.tick_type(11))
            at_bid, at_ask = board.quote_greeks(instrument)
            out.extend(option_computations(req, tick_types, option, at_bid, at_ask))
        if first:
            generic = self.generic_ticks
            call = instrument.right == "C"
            moneyness = math.log(instrument.strike / option.underlying)
            interest = float(int(5000 * math.exp(-((moneyness / 0.05) ** 2))) + 10)
            if 101 in generic:
                out.append(tick_size(req, 27 if call else 28, interest))
            if 100 in generic:
                out.append(tick_size(req, 29 if call else 30, float(int(interest / 10))))

    def _combo(self, board: QuoteBoard, out: list[bytes], fault: str | None):
        bid = ask = 0.0
        bid_units = ask_units = math.inf
        for leg in self.legs:
            quote = board.quote(leg.instrument)
            sign = 1 if leg.action == "BUY" else -1
            bid += sign * leg.ratio * (quote.bid if sign > 0 else quote.ask)
            ask += sign * leg.ratio * (quote.ask if sign > 0 else quote.bid)
            bid_units = min(
                bid_units, (quote.bid_size if sign > 0 else quote.ask_size) // leg.ratio
            )
            ask_units = min(
                ask_units, (quote.ask_size if sign > 0 else quote.bid_size) // leg.ratio
            )
        bid_size = float(max(bid_units, 1.0))
        ask_size = float(max(ask_units, 1.0))
        self._quote(out, round(bid, 4), round(ask, 4), bid_size, ask_size, fault)
