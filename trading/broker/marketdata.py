"""IB market data lines for the ingestion feed: which lines are held, IB's notices and what
they do to the lines, tick translation, historical bars. No Redis: `MarketDataLines` is driven
by the ingestion shell (`trading.services.ingestion`), which publishes what it returns.

`MarketDataLines` holds one IB session's subscriptions (TLT and TLTW with their generic ticks,
the calls around the money, the held options the shell asks for), the feed's data health
(`HealthBoard`), the connection's exchange and gateway clocks, and the connection policy
(`ERROR_POLICY`: farms down, connectivity lost/restored, delayed-data fallback) applied to the
lines and the health board.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from prometheus_client import Counter, Gauge

from trading.broker.chain import (
    Chain,
    contract_order,
    load_chain,
    nearest_strike,
    plan_option_lines,
    qualify_stocks,
    rank_strikes,
    select_expiries,
    should_recentre,
    strike_window,
)
from trading.broker.health import HealthBoard
from trading.broker.pacing import PacingGate
from trading.broker.translate import (
    ExchangeClock,
    GatewayClock,
    bar_end_time,
    chain_option_from_contract,
    option_quote_from_ticker,
    quote_from_ticker,
)
from trading.bus import ChainOption, OptionChain, OptionQuote, Quote
from trading.domain.market_hours import EXCHANGE_TIMEZONE
from trading.settings import Settings

STOCK_GENERIC_TICKS = "456"
"""TLT's dividend tick (456: tick type 59), added back into the buy-write index."""
ETF_GENERIC_TICKS = "456,576,577,578"
"""IB's dividend generic tick (456: tick type 59, the distributions the strategy adds back for
total return) and ETF NAV generic ticks (tick types 92-99: NAV close, prior close, bid, ask,
last, frozen last, high, low). ib_async maps the NAV ticks to ticker.etfNav*; ib_insync ignores
them but keeps them in ticker.ticks, which is what `nav_from_ticks` reads."""
OPTION_GENERIC_TICKS = ""
"""Model Greeks (tick type 13) come with every option subscription; nothing extra is needed."""
DELAYED_MARKET_DATA = 3
NO_HISTORY = "query returned no data"
"""IB's error 162 text when it has no bars for the contract (not a pacing violation)."""

TICKS = Counter(
    "trading_ingestion_ticks_total", "IB ticks received, per instrument", ["instrument"]
)
PUBLISHED = Counter(
    "trading_ingestion_published_total", "Good quotes published, per instrument", ["instrument"]
)
SUBSCRIPTIONS = Gauge("trading_ingestion_subscriptions", "Market data lines in use")
RESUBSCRIPTIONS = Counter(
    "trading_ingestion_resubscriptions_total", "Market data resubscriptions, per cause", ["cause"]
)
IB_EVENTS = Counter(
    "trading_ingestion_ib_events_total", "IB errors and notices handled, per action", ["action"]
)
BACKFILL_REQUESTS = Counter(
    "trading_ingestion_backfill_requests_total", "Historical data requests sent", ["outcome"]
)


class ErrorAction(StrEnum):
    NOTICE = "notice"  # informational: log at info
    DATA_FARM_OK = "data_farm_ok"  # 2104: resubscribe if that farm was down
    HISTORY_FARM_OK = "history_farm_ok"  # 2106: retry a backfill the outage held up
    DATA_FARM_DOWN = "data_farm_down"  # 2103: live data stale until the farm is back
    HISTORY_FARM_DOWN = "history_farm_down"  # 2105: backfill waits for the farm
    CONNECTIVITY_LOST = "connectivity_lost"  # 1100: everything stale
    RESTORED_DATA_LOST = "restored_data_lost"  # 1101: resubscribe everything
    RESTORED_DATA_KEPT = "restored_data_kept"  # 1102: check the subscriptions
    DELAYED_FALLBACK = "delayed_fallback"  # 10167/354: market data type 3, flagged
    HISTORY_ERROR = "history_error"  # 162 (pacing violation, no data): retry later
    NO_SECURITY = "no_security"  # 200
    CLIENT_ID_IN_USE = "client_id_in_use"  # 326: the connection backs off
    ERROR = "error"  # anything else: log


ERROR_POLICY: dict[int, ErrorAction] = {
    2104: ErrorAction.DATA_FARM_OK,
    2106: ErrorAction.HISTORY_FARM_OK,
    2158: ErrorAction.NOTICE,  # sec-def farm OK
    2103: ErrorAction.DATA_FARM_DOWN,
    2105: ErrorAction.HISTORY_FARM_DOWN,
    1100: ErrorAction.CONNECTIVITY_LOST,
    1101: ErrorAction.RESTORED_DATA_LOST,
    1102: ErrorAction.RESTORED_DATA_KEPT,
    10167: ErrorAction.DELAYED_FALLBACK,
    354: ErrorAction.DELAYED_FALLBACK,
    162: ErrorAction.HISTORY_ERROR,
    200: ErrorAction.NO_SECURITY,
    326: ErrorAction.CLIENT_ID_IN_USE,
}


def error_action(code: int) -> ErrorAction:
    """What the feed does about an IB error/notice code (2100-2199 not listed are notices)."""
    action = ERROR_POLICY.get(code)
    if action is not None:
        return action
    return ErrorAction.NOTICE if 2100 <= code < 2200 else ErrorAction.ERROR


def farm_name(message: str) -> str:
    """The farm in IB's farm notices ("Market data farm connection is broken:usfarm")."""
    return message.rsplit(":", 1)[-1].strip() if ":" in message else ""


QUIET_ACTIONS = frozenset(
    {ErrorAction.NOTICE, ErrorAction.DATA_FARM_OK, ErrorAction.HISTORY_FARM_OK}
)
"""Notices logged at info, after which the feed's health needs no immediate publication."""


# The lines --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Line:
    """One market data line: what it is and how to name it on the bus."""

    name: str  # "TLT", "TLTW", or str(con_id) for an option
    contract: Any
    option: ChainOption | None = None
    generic_ticks: str = ""
    ticks_metric: Any = None
    published_metric: Any = None

    def __post_init__(self) -> None:
        self.ticks_metric = TICKS.labels(self.name)
        self.published_metric = PUBLISHED.labels(self.name)


@dataclass(frozen=True, slots=True)
class Recentred:
    """What `MarketDataLines.recentre` did: the option lines it wants (window and held), the
    ones it subscribed anew, the held ones outside the window, and the chain to publish."""

    wanted: frozenset[int]
    added: tuple[int, ...]
    held_only: tuple[int, ...]
    chain: OptionChain


class MarketDataLines:
    """One IB session's market data lines and what IB says about them.

    `start(ib, ...)` begins a session (the library forgot every subscription): TLT and TLTW
    qualified and subscribed; `load_chain()` then reads TLT's chain, and `recentre(spot, held)`
    subscribes the calls around spot within the line budget, held contracts first (see
    `plan_option_lines`). `on_error` applies `ERROR_POLICY` to the lines and `health`.
    """

    def __init__(
        self,
        settings: Settings,
        library: Any,
        log: logging.Logger,
        clock: Callable[[], float] = time.time,
        pacing: PacingGate | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.ingestion
        self.pair = settings.pair_spec()
        """The pair whose two stocks (and the underlying's calls) these lines carry."""
        self.lib = library
        self.log = log
        self.clock = clock
        self.pacing = pacing or PacingGate()
        self.health = HealthBoard(self.cfg.silence_s)
        self.exchange_clock = ExchangeClock()
        """The connection's exchange time, stamped on every quote (see `ExchangeClock`)."""
        self.gateway_clock = GatewayClock()
        """The gateway's clock from reqCurrentTime, sampled by the shell every second or so:
        the exchange clock's stand-in while no tick carries a trade time (ib_insync)."""
        self.ib: Any = None
        self.connected = False
        self.lines: dict[int, Line] = {}  # con_id -> line: this session's subscriptions
        self.stocks: dict[str, Any] = {}  # symbol -> qualified Contract
        self.chain = Chain()
        self._strikes: tuple[Chain | None, tuple[float, ...]] = (None, ())
        """The chain whose calls' strikes, sorted, are kept (a chain is replaced, not changed)."""
        self.centre: float | None = None
        self.spot: float | None = None  # TLT's newest mid
        self.delayed = settings.ib.market_data_type in (3, 4)
        self.health.delayed = self.delayed
        self.farms_down: set[str] = set()
        self.history_farm_down = False
        self.held_lines: tuple[int, ...] = ()  # held con_ids subscribed outside the window
        self.held_planned: frozenset[int] = frozenset()  # held contracts at the last plan
        self.window_spot: float | None = None  # the spot the lines were last planned on
        self._check_after: float | None = None

    # session --------------------------------------------------------------------------------

    async def start(
        self,
        ib: Any,
        on_tickers: Callable[[Iterable[Any]], None],
        on_disconnected: Callable[[], None],
    ) -> None:
        """A fresh IB session: clocks and lines reset, the handlers attached (once), the market
        data type requested, the gateway clock sampled, TLT and TLTW qualified and subscribed."""
        self.exchange_clock.reset()
        self.gateway_clock.reset()
        self.ib = ib
        self.connected = True
        self.lines.clear()
        self.centre = None
        self.farms_down.clear()
        self.health.clear_feed_stale("farm")
        self.health.clear_feed_stale("connectivity")
        self.health.clear_feed_stale("connection")
        for event, handler in (
            (ib.pendingTickersEvent, on_tickers),
            (ib.disconnectedEvent, on_disconnected),
        ):
            with contextlib.suppress(ValueError):
                event -= handler
            event += handler
        ib.reqMarketDataType(self.market_data_type())
        await self.sample_gateway_clock(ib)
        underlying, etf = self.pair.stocks
        self.stocks = await qualify_stocks(ib, self.lib, self.pair.stocks)
        self.subscribe(Line(underlying, self.stocks[underlying], generic_ticks=STOCK_GENERIC_TICKS))
        self.subscribe(Line(etf, self.stocks[etf], generic_ticks=ETF_GENERIC_TICKS))

    def disconnected(self) -> None:
        self.connected = False
        self.health.set_feed_stale("connection", "IB connection lost")

    def market_data_type(self) -> int:
        return DELAYED_MARKET_DATA if self.delayed else self.settings.ib.market_data_type

    async def load_chain(self) -> None:
        self.chain = await load_chain(
            self.ib, self.lib, self.stocks[self.pair.underlying], self.exchange_today(),
            self.cfg.expiries,
            self.log,
        )  # fmt: skip

    async def roll_chain(self) -> bool:
        """After an expiry (IB's date past the front one), load the chain again; True when it
        did (the caller re-centres: the next expiry's calls are not subscribed yet)."""
        if not self.chain.calls or self.ib is None or self.pair.underlying not in self.stocks:
            return False
        today = self.exchange_today()
        wanted = select_expiries(self.chain.expiries, today, self.cfg.expiries)
        if wanted == tuple(sorted(self.chain.calls)):
            return False
        self.log.info(
            "expiry passed: loading the option chain again for %s", list(wanted),
            extra={"event.action": "chain_rolled"},
        )  # fmt: skip
        await self.load_chain()
        return True

    def exchange_today(self) -> date:
        """The exchange's date: of the newest trade time on the connection (tick 45), which
        runs with a simulated clock too, else of IB's clock as read at connect."""
        now = self.exchange_clock.now
        moment = self.ib_now() if now is None else datetime.fromtimestamp(now, UTC)
        return moment.astimezone(EXCHANGE_TIMEZONE).date()

    def ib_now(self) -> datetime:
        """IB's clock (the simulated one under ibsim), from the gateway clock's samples."""
        now = self.clock()
        gateway = self.gateway_clock.now(now)
        return datetime.fromtimestamp(now if gateway is None else gateway, UTC)

    async def sample_gateway_clock(self, ib: Any) -> None:
        """One reqCurrentTime, taken as the gateway's time at the middle of its round trip."""
        sent = self.clock()
        server_now = await ib.reqCurrentTimeAsync()
        self.gateway_clock.observe(server_now.timestamp(), (sent + self.clock()) / 2.0)

    # subscriptions --------------------------------------------------------------------------

    def subscribe(self, line: Line, cause: str = "") -> None:
        self.lines[line.contract.conId] = line
        self.ib.reqMktData(line.contract, line.generic_ticks, False, False)
        self.health.track(line.name, self.clock())
        if cause:
            RESUBSCRIPTIONS.labels(cause).inc()
        SUBSCRIPTIONS.set(len(self.lines))

    def unsubscribe(self, con_id: int) -> Line | None:
        line = self.lines.pop(con_id, None)
        if line is not None and self.connected:
            self.ib.cancelMktData(line.contract)
        SUBSCRIPTIONS.set(len(self.lines))
        return line

    def line_named(self, name: str) -> Line | None:
        return next((ln for ln in self.lines.values() if ln.name == name), None)

    def resubscribe(self, lines: Iterable[Line], cause: str) -> None:
        """Cancel and request lines again, with a fresh silence allowance."""
        if self.ib is None or not self.connected:
            return
        lines = list(lines)
        for line in lines:
            self.unsubscribe(line.contract.conId)
        self.ib.reqMarketDataType(self.market_data_type())
        for line in lines:
            self.subscribe(line, cause)
        self.health.restart_silence(self.clock())
        self.log.info(
            "resubscribed %d lines (%s)", len(lines), cause,
            extra={"event.action": "resubscribed", "event.reason": cause},
        )  # fmt: skip

    def resubscribe_all(self, cause: str) -> None:
        self.resubscribe(self.lines.values(), cause)

    def check_subscriptions(self, now: float) -> None:
        """Once the check after 1102 (connectivity restored, data kept) is due: lines still
        silent are requested again; the others kept flowing, as IB promised."""
        if self._check_after is None or now < self._check_after:
            return
        self._check_after = None
        silent = [
            ln for ln in self.lines.values()
            if ln.name in self.health.instruments
            and now - self.health.instruments[ln.name].last_good > self.health.silence_s / 2
        ]  # fmt: skip
        if silent:
            self.resubscribe(silent, "check_after_1102")

    def may_recentre(self, spot: float) -> bool:
        """True when the calls should move to TLT at `spot` (see `should_recentre`)."""
        if not self.chain.calls or not self.connected:
            return False
        if self._strikes[0] is not self.chain:  # asked on every tick of TLT: once a chain
            strikes = sorted({k for calls in self.chain.calls.values() for k in calls})
            self._strikes = (self.chain, tuple(strikes))
        return should_recentre(self.centre, spot, self._strikes[1], self.cfg.recentre_hysteresis)

    def recentre(self, spot: float, held: dict[int, Any]) -> Recentred | None:
        """Subscribe the calls around spot for each selected expiry and the `held` contracts
        (con_id -> Contract) within the line budget; drop the option lines no longer wanted.
        None when there is no chain or no session."""
        if not self.chain.calls or not self.connected:
            return None
        windows = {
            expiry: strike_window(sorted(calls), spot, self.cfg.strikes_each_side)
            for expiry, calls in self.chain.calls.items()
            if calls
        }
        stock_lines = sum(1 for ln in self.lines.values() if ln.option is None)
        budget = max(self.cfg.max_market_data_lines - stock_lines, 0)
        ranked = rank_strikes(windows, spot)
        window_contracts = {self.chain.calls[e][k].conId: self.chain.calls[e][k] for e, k in ranked}
        held_ids = sorted(held, key=lambda c: contract_order(held[c]))
        window_kept, held_only, _ = plan_option_lines(list(window_contracts), held_ids, budget)
        wanted = {c: window_contracts[c] for c in window_kept}
        wanted |= {c: held[c] for c in held_only}
        self.held_planned = frozenset(held)
        self.window_spot = spot
        self.held_lines = held_only
        subscribed = {c for c, ln in self.lines.items() if ln.option is not None}
        added = [c for c in wanted if c not in subscribed]
        for con_id in subscribed - set(wanted):
            self.unsubscribe(con_id)
        for con_id in added:
            option = chain_option_from_contract(wanted[con_id])
            self.subscribe(Line(str(con_id), wanted[con_id], option, OPTION_GENERIC_TICKS))
        kept = set(window_kept)
        window_strikes = {float(window_contracts[c].strike) for c in kept}
        self.centre = nearest_strike(sorted(window_strikes or {k for _, k in ranked}), spot)
        chain = OptionChain(
            underlying=self.pair.underlying,
            underlying_con_id=self.stocks[self.pair.underlying].conId,
            expiries=self.chain.expiries,
            strikes=self.chain.strikes,
            subscribed=tuple(  # the window only: held-only contracts are not strikes to write
                sorted(
                    (ln.option for c, ln in self.lines.items() if ln.option and c in kept),
                    key=lambda o: (o.expiry, o.strike),
                )
            ),
            spot=spot,
            ts=self.clock(),
        )
        return Recentred(frozenset(wanted), tuple(added), held_only, chain)

    # the connection policy ------------------------------------------------------------------

    def on_error(self, req_id: int, code: int, message: str, contract: Any) -> ErrorAction:
        """Apply ERROR_POLICY to the lines and the health board (none of it needs a
        restart); the action, for the caller's part (backfill, publishing the health)."""
        action = error_action(code)
        IB_EVENTS.labels(action.value).inc()
        extra = {"event.action": f"ib_{action.value}", "error.code": str(code), "ib.req_id": req_id}
        level = logging.INFO if action in QUIET_ACTIONS else logging.WARNING
        self.log.log(level, "IB %s (req %s): %s", code, req_id, message, extra=extra)
        if action is ErrorAction.DATA_FARM_DOWN:
            self.farms_down.add(farm_name(message))
            self.health.set_feed_stale("farm", f"market data farm down (IB {code})")
        elif action is ErrorAction.DATA_FARM_OK and self.farms_down:
            self.farms_down.discard(farm_name(message))
            if not self.farms_down or not farm_name(message):
                self.farms_down.clear()
                self.health.clear_feed_stale("farm")
                self.resubscribe_all("data_farm_ok")
        elif action is ErrorAction.HISTORY_FARM_DOWN:
            self.history_farm_down = True
        elif action is ErrorAction.HISTORY_FARM_OK:
            self.history_farm_down = False
        elif action is ErrorAction.CONNECTIVITY_LOST:
            self.health.set_feed_stale("connectivity", f"IB connectivity lost (IB {code})")
        elif action is ErrorAction.RESTORED_DATA_LOST:
            self.health.clear_feed_stale("connectivity")
            self.resubscribe_all("restored_data_lost")
        elif action is ErrorAction.RESTORED_DATA_KEPT:
            self.health.clear_feed_stale("connectivity")
            now = self.clock()
            self.health.restart_silence(now)
            self._check_after = now + self.health.silence_s / 2
        elif action is ErrorAction.DELAYED_FALLBACK:
            if not self.delayed:
                self.delayed = self.health.delayed = True
                self.resubscribe_all("delayed_fallback")
            elif code == 354 and contract is not None and contract.conId in self.lines:
                self.resubscribe([self.lines[contract.conId]], "delayed_fallback")
        return action

    # ticks and bars -------------------------------------------------------------------------

    def exchange_time(self, tickers: Iterable[Any], now: float) -> float | None:
        """The connection's exchange time after this batch of tickers (see `ExchangeClock`)."""
        return self.exchange_clock.update(tickers, self.gateway_clock.now(now))

    def quote(
        self, ticker: Any, line: Line, ts_recv: float, ts_exchange: float | None
    ) -> Quote | OptionQuote:
        """The line's ticker as a quote (stocks) or an option quote with Greeks; BadTick when
        the ticker is not a good quote (see `trading.broker.translate`)."""
        delayed = self.delayed or ticker.marketDataType in (3, 4)
        if line.option is None:
            return quote_from_ticker(
                ticker, line.name, ticker.contract.conId, ts_recv, delayed, ts_exchange
            )
        return option_quote_from_ticker(
            ticker, line.option, ts_recv, self.cfg.max_implied_vol, delayed,
            self.pair.underlying, ts_exchange,
        )  # fmt: skip

    async def history_bars(self, contract: Any) -> list[tuple[float, float]] | None:
        """(bar end epoch, close) MIDPOINT bars, paced; [] when IB has no bars of the contract,
        None when IB answered with an error (retry later)."""
        cfg = self.cfg
        key = (contract.conId, cfg.backfill_duration, cfg.backfill_bar_size, "MIDPOINT")
        await self.pacing.acquire(key)
        failed: list[str] = []

        def on_error(req_id: int, code: int, message: str, c: Any) -> None:
            if code == 162 and getattr(c, "conId", None) == contract.conId:
                failed.append(message)

        self.ib.errorEvent += on_error
        try:
            bars = await self.ib.reqHistoricalDataAsync(
                contract, "", cfg.backfill_duration, cfg.backfill_bar_size, "MIDPOINT",
                useRTH=True, formatDate=2, keepUpToDate=False, timeout=cfg.backfill_timeout_s,
            )  # fmt: skip
        finally:
            self.ib.errorEvent -= on_error
        if failed and all(NO_HISTORY in message for message in failed):
            # IB has no bars of this contract (a new listing, an expired one): asking again
            # every few seconds gets the same answer; its live ticks are recorded as they come.
            BACKFILL_REQUESTS.labels("no_data").inc()
            self.log.warning(
                "no history at IB for %s: not backfilled (%s)",
                getattr(contract, "localSymbol", contract.conId), failed[-1][:120],
                extra={"event.action": "backfill_no_data"},
            )  # fmt: skip
            return []
        if failed or (not bars and self.history_farm_down):
            BACKFILL_REQUESTS.labels("error").inc()
            return None
        BACKFILL_REQUESTS.labels("ok").inc()
        seconds = _bar_seconds(cfg.backfill_bar_size)
        return [(bar_end_time(_bar_start(b.date), seconds), float(b.close)) for b in bars or []]


def _bar_seconds(bar_size: str) -> float:
    parts = bar_size.split()
    scale = {"sec": 1, "secs": 1, "min": 60, "mins": 60, "hour": 3600, "hours": 3600}
    if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in scale:
        raise ValueError(f"backfill_bar_size={bar_size!r} must be intraday, e.g. '1 min'")
    return int(parts[0]) * scale[parts[1]]


def _bar_start(value: Any) -> float | datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        raise ValueError(f"bar date={value!r} is a day: the backfill needs intraday bars")
    return float(value)
