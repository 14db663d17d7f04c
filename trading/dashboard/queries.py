"""The dashboard's query layer: reads Redis through the bus and shapes one model per panel.

Every HTTP route, the live push and the PNG plots call this module, so a route is one line and
the page, the JSON API and the plots can never show different numbers. It only reads, except
`send_command`, which appends an operator command for risk-management to act on.

The pair's names (its two stocks, the underlying of the call written) come from its
`trading.domain.pair.PairSpec` (`Settings.pair_spec`), never spelled here; the prices panel
carries them (`PricesPanel.pair`) so the page names its charts from the same value.

Redis that does not answer within `timeout_s` raises `DataUnavailable` (the API answers 503)
instead of waiting on the bus's reconnect loop. A malformed value in Redis is logged, counted and
shown as missing: the dashboard never fails because one writer wrote something bad.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

import orjson

from trading.bus import (
    RETRYABLE,
    Alert,
    Bus,
    DataHealth,
    DataStatus,
    EtfNav,
    Fill,
    Heartbeat,
    Keys,
    LegKind,
    M,
    Message,
    MessageError,
    OperatorCommand,
    OptionChain,
    OptionQuote,
    OrderEvent,
    OrderIntent,
    PnL,
    Position,
    Quote,
    RiskStatus,
    Signal,
    SignalAction,
    SpreadPoint,
    Streams,
    decode,
)
from trading.bus.client import RawEntries
from trading.dashboard import plots
from trading.dashboard.contracts import contract_name, option_name
from trading.dashboard.models import (
    AlertsPanel,
    Bands,
    BookPanel,
    BrokerConnection,
    ControlAccepted,
    ControlCommand,
    ControlRequest,
    DataAge,
    HealthPanel,
    Healthz,
    HedgePanel,
    HedgeSeries,
    InstrumentHealth,
    InstrumentPrice,
    LimitUse,
    MarketClock,
    OptionPanel,
    PairNames,
    PanelName,
    PlotName,
    PriceSeries,
    PricesPanel,
    RiskPanel,
    ServiceHealth,
    SpreadPanel,
    SpreadSeries,
    TradeMarker,
)
from trading.dashboard.series import StreamColumns, parse_entry_id
from trading.domain.market_hours import EXCHANGE_TIMEZONE
from trading.domain.pair import PairSpec
from trading.observability import BAD_MESSAGES
from trading.settings import Settings

log = logging.getLogger(__name__)

SERVICES = ("data-ingestion", "strategy", "risk-management", "visualization", "monitoring")
"""The services whose heartbeat the health panel expects; one missing is shown as silent."""

SERIES_CAPACITY = 20_000
"""Rows of each plotted stream kept in memory (and the largest `limit` the API accepts)."""
DEFAULT_POINTS = 2_000
MAX_MARKERS = 200
SPREAD_COLUMNS = ("ts", "spread", "mean", "std", "z", "beta", "index_value", "tltw")
SIGNAL_COLUMNS = ("ts", "action", "state", "z", "spread", "reason")

P = ParamSpec("P")
T = TypeVar("T")


class DataUnavailable(RuntimeError):
    """Redis did not answer in time (or at all): the API answers 503, the page shows it."""


def bounded(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Run a query under the instance's timeout; a dead Redis becomes DataUnavailable."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        self = args[0]
        try:
            async with asyncio.timeout(self.timeout_s):  # type: ignore[attr-defined]
                return await method(*args, **kwargs)
        except TimeoutError:
            raise DataUnavailable(f"redis did not answer within {self.timeout_s}s") from None  # type: ignore[attr-defined]
        except RETRYABLE as exc:
            raise DataUnavailable(f"redis unavailable: {exc}") from None

    return wrapper


def quote_mid(bid: float, ask: float, last: float | None) -> float | None:
    """(bid + ask)/2 for a two-sided, uncrossed quote; else the last trade; else None."""
    if bid > 0 and ask > 0 and ask >= bid:
        return (bid + ask) / 2
    return last if last is not None and last > 0 else None


def _spread_row(msg: Message) -> tuple | None:
    if not isinstance(msg, SpreadPoint):
        return None
    return (msg.ts, msg.spread, msg.mean, msg.std, msg.z, msg.beta, msg.index_value, msg.tltw)


def _signal_row(msg: Message) -> tuple | None:
    if not isinstance(msg, Signal) or msg.action is SignalAction.NONE:
        return None
    return (msg.ts, msg.action, msg.state, msg.z, msg.spread, msg.reason)


def _quote_row(msg: Message) -> tuple | None:
    if not isinstance(msg, Quote):
        return None
    mid = quote_mid(msg.bid, msg.ask, msg.last)
    return None if mid is None else (msg.ts_exchange, mid)


def _entry_ts(entry_id: bytes) -> float:
    """Wall-clock time Redis appended a stream entry (its id's milliseconds)."""
    return parse_entry_id(entry_id.decode())[0] / 1000.0


class DashboardQueries:
    """Panels read from Redis. One instance per app; it keeps the plotted series in memory.
    ``pair`` is the pair shown (default: the settings', `Settings.pair_spec`)."""

    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        *,
        pair: PairSpec | None = None,
        timeout_s: float = 2.0,
        series_capacity: int = SERIES_CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.pair = pair if pair is not None else settings.pair_spec()
        self.instruments = self.pair.stocks
        self.timeout_s = timeout_s
        self.clock_fn = clock
        self.spread_series = StreamColumns(
            bus, Streams.SPREAD, SPREAD_COLUMNS, _spread_row, series_capacity
        )
        self.signal_series = StreamColumns(
            bus, Streams.SIGNALS, SIGNAL_COLUMNS, _signal_row, MAX_MARKERS * 5
        )
        self.price_series = {
            symbol: StreamColumns(
                bus, Streams.history(symbol), ("ts", "price"), _quote_row, series_capacity
            )
            for symbol in self.instruments
        }

    # reading helpers -------------------------------------------------------------------------

    def _decode_or_none(self, key: str, raw: bytes | str | None, expect: type[M]) -> M | None:
        if raw is None:
            return None
        try:
            return decode(raw, expect)
        except MessageError as exc:
            BAD_MESSAGES.labels("visualization", key, "malformed").inc()
            log.warning(
                "malformed value at %s shown as missing: %s",
                key,
                exc,
                extra={"event.action": "bad_message"},
            )
            return None

    async def _latest_many(self, wanted: dict[str, type[Message]]) -> dict[str, Any]:
        """Several latest-value keys in one round trip (MGET)."""
        keys = list(wanted)
        raws = await self.bus.redis.mget(keys)
        return {
            key: self._decode_or_none(key, raw, wanted[key])
            for key, raw in zip(keys, raws, strict=True)
        }

    async def _hash(self, key: str, expect: type[M]) -> list[M]:
        return self._decode_hash(key, await self.bus.redis.hgetall(key), expect)

    def _decode_hash(
        self, key: str, raw: dict[bytes | str, bytes | str], expect: type[M]
    ) -> list[M]:
        values = (self._decode_or_none(key, v, expect) for _, v in sorted(raw.items()))
        return [v for v in values if v is not None]

    async def _latest_spread(self) -> SpreadPoint | None:
        raw = await self.bus.redis.get(Keys.SPREAD_LATEST)
        return self._decode_or_none(Keys.SPREAD_LATEST, raw, SpreadPoint)

    def _age(self, ts: float | None) -> float | None:
        return None if ts is None else max(0.0, self.clock_fn() - ts)

    @property
    def stale_after_s(self) -> float:
        """An update older than this (wall seconds) is flagged stale: data-ingestion's silence."""
        return self.settings.ingestion.silence_s

    async def _option_names(self) -> tuple[dict[str, str], dict[str, OptionQuote]]:
        """conId -> name of every option data-ingestion subscribed, and its newest quote."""
        pipe = self.bus.redis.pipeline(transaction=False)
        pipe.get(Keys.CHAIN)
        pipe.hgetall(Keys.OPTION_INDEX)
        raw_chain, raw_index = await pipe.execute()
        names: dict[str, str] = {}
        chain = self._decode_or_none(Keys.CHAIN, raw_chain, OptionChain)
        if chain is not None:
            for option in chain.subscribed:
                names[str(option.con_id)] = option_name(
                    chain.underlying, option.expiry, option.strike, option.right
                )
        quotes = {}
        for quote in self._decode_hash(Keys.OPTION_INDEX, raw_index, OptionQuote):
            quotes[str(quote.con_id)] = quote
            names[str(quote.con_id)] = option_name(
                quote.symbol, quote.expiry, quote.strike, quote.right
            )
        return names, quotes

    def _bands(self, latest: SpreadPoint | None) -> Bands:
        if latest is not None:
            return Bands(entry_z=latest.entry_z, exit_z=latest.exit_z, stop_z=latest.stop_z)
        st = self.settings.strategy
        return Bands(entry_z=st.entry_z, exit_z=st.exit_z, stop_z=st.stop_z)

    # panels ----------------------------------------------------------------------------------

    @bounded
    async def clock(self) -> MarketClock:
        """The market's clock now, from the newest quote of the pair's two stocks (exchange time,
        receive time)."""
        now = self.clock_fn()
        sim = self.settings.sim
        rate = sim.speed if sim.enabled else 1.0
        latest = await self._latest_many({Keys.quote(s): Quote for s in self.instruments})
        quotes = [q for q in latest.values() if q is not None]
        market_ts = None
        if quotes:
            newest = max(quotes, key=lambda q: q.ts_recv)
            since = min(max(now - newest.ts_recv, 0.0), self.stale_after_s)
            market_ts = newest.ts_exchange + since * rate
        return MarketClock(
            simulated=sim.enabled,
            source=f"ibsim, {sim.speed:g}x" if sim.enabled else "IB Gateway",
            market_ts=market_ts,
            wall_ts=now,
            rate=rate,
            timezone=str(EXCHANGE_TIMEZONE),
            stale_after_s=self.stale_after_s,
        )

    @bounded
    async def spread(self, limit: int = DEFAULT_POINTS, since: float | None = None) -> SpreadPanel:
        """The spread and z-score series with bands and the signals that acted."""
        latest = await self._latest_spread()
        await self.spread_series.refresh()
        await self.signal_series.refresh()
        columns = self.spread_series.newest(limit, since)
        first_ts = self.spread_series.first_ts(limit)
        signals = self.signal_series.newest(MAX_MARKERS)
        markers = [
            TradeMarker(ts=ts, action=action, state=state, z=z, spread=spread, reason=reason)
            for ts, action, state, z, spread, reason in zip(*signals.values(), strict=True)
            if first_ts is None or ts >= first_ts
        ]
        return SpreadPanel(
            latest=latest,
            bands=self._bands(latest),
            series=SpreadSeries(**columns),
            markers=markers,
            age_s=self._age(self.spread_series.last_write_ts),
        )

    @bounded
    async def prices(
        self,
        limit: int = DEFAULT_POINTS,
        since: float | None = None,
        since_by_series: dict[str, float] | None = None,
    ) -> PricesPanel:
        """The pair's two stocks' quotes (with the ETF's NAV premium) and the buy-write index.

        The three series run on different writers' clocks, so the live push keeps one cursor
        per series (`since_by_series`, keyed like `PricesPanel.series`); `since` applies to all.
        """
        cursors = since_by_series or {}
        wanted: dict[str, type[Message]] = {Keys.quote(s): Quote for s in self.instruments}
        wanted.update({Keys.nav(s): EtfNav for s in self.instruments})
        latest = await self._latest_many(wanted)
        instruments = []
        for symbol in self.instruments:
            quote: Quote | None = latest[Keys.quote(symbol)]
            nav_msg: EtfNav | None = latest[Keys.nav(symbol)]
            mid = quote_mid(quote.bid, quote.ask, quote.last) if quote else None
            nav = nav_msg.nav if nav_msg and nav_msg.nav > 0 else None
            two_sided = quote is not None and quote.bid > 0 and quote.ask >= quote.bid
            instruments.append(
                InstrumentPrice(
                    symbol=symbol,
                    quote=quote,
                    mid=mid,
                    spread_bp=(
                        (quote.ask - quote.bid) / mid * 1e4 if quote and two_sided and mid else None
                    ),
                    nav=nav,
                    premium_bp=(mid - nav) / nav * 1e4 if mid is not None and nav else None,
                    age_s=self._age(quote.ts_recv) if quote else None,
                )
            )
        series = {}
        for symbol, columns in self.price_series.items():
            await columns.refresh()
            series[symbol] = PriceSeries(**columns.newest(limit, cursors.get(symbol, since)))
        await self.spread_series.refresh()
        index = self.spread_series.newest(limit, cursors.get("buy_write_index", since))
        series["buy_write_index"] = PriceSeries(ts=index["ts"], price=index["index_value"])
        pair = self.pair
        return PricesPanel(
            pair=PairNames(underlying=pair.underlying, etf=pair.etf, pair_id=pair.pair_id),
            instruments=instruments,
            buy_write_index=self.spread_series.last("index_value"),
            series=series,
        )

    @bounded
    async def hedge(self, limit: int = DEFAULT_POINTS, since: float | None = None) -> HedgePanel:
        latest = await self._latest_spread()
        await self.spread_series.refresh()
        columns = self.spread_series.newest(limit, since)
        return HedgePanel(
            beta=latest.beta if latest else None,
            alpha=latest.alpha if latest else None,
            method=latest.hedge_method if latest else None,
            series=HedgeSeries(ts=columns["ts"], beta=columns["beta"]),
        )

    @bounded
    async def option(self) -> OptionPanel:
        """The call the buy-write leg is short, as the strategy names it in the spread point."""
        latest = await self._latest_spread()
        if latest is None or latest.call_con_id <= 0:
            return OptionPanel(
                con_id=None, name=None, strike=None, expiry=None, quote=None, mid=None,
                delta_shares_per_contract=None, gamma_shares_per_contract=None,
                vega_usd_per_point_per_contract=None, theta_usd_per_day_per_contract=None,
                age_s=None,
            )  # fmt: skip
        key = Keys.option(latest.call_con_id)
        quote = self._decode_or_none(key, await self.bus.redis.get(key), OptionQuote)
        multiplier = 100.0
        return OptionPanel(
            con_id=latest.call_con_id,
            name=option_name(
                self.pair.underlying if quote is None else quote.symbol,
                latest.call_expiry,
                latest.call_strike,
                "C",
            ),
            strike=latest.call_strike,
            expiry=latest.call_expiry,
            quote=quote,
            mid=quote_mid(quote.bid, quote.ask, None) if quote else None,
            delta_shares_per_contract=quote.delta * multiplier if quote else None,
            gamma_shares_per_contract=quote.gamma * multiplier if quote else None,
            vega_usd_per_point_per_contract=quote.vega_per_point * multiplier if quote else None,
            theta_usd_per_day_per_contract=quote.theta_per_day * multiplier if quote else None,
            age_s=self._age(quote.ts_recv) if quote else None,
        )

    @bounded
    async def book(self, fills: int = 20) -> BookPanel:
        """Positions, the day's P&L, working orders and the newest fills.

        Positions and P&L are read in one MULTI/EXEC, as risk writes them: the panel shows
        one moment of the book, never positions of one tick beside a P&L of another.
        """
        pipe = self.bus.redis.pipeline(transaction=True)
        pipe.hgetall(Keys.POSITIONS)
        pipe.get(Keys.PNL)
        pipe.hgetall(Keys.OPEN_ORDERS)
        raw_positions, raw_pnl, raw_orders = await pipe.execute()
        positions = self._decode_hash(Keys.POSITIONS, raw_positions, Position)
        pnl = self._decode_or_none(Keys.PNL, raw_pnl, PnL)
        open_orders = sorted(
            self._decode_hash(Keys.OPEN_ORDERS, raw_orders, OrderEvent), key=lambda o: o.ts
        )
        recent = [entry.message for entry in await self.bus.read_range(Streams.FILLS, fills, Fill)]
        held: list[Position | Fill] = [*positions, *recent]
        contracts = {
            str(item.con_id): contract_name(item.symbol, item.sec_type, item.local_symbol)
            for item in held
        }
        return BookPanel(
            positions=sorted(positions, key=lambda p: (p.symbol, p.local_symbol)),
            pnl=pnl,
            open_orders=open_orders,
            fills=recent,
            contracts=contracts,
            orders=await self._order_names(open_orders),
        )

    async def _order_names(self, orders: list[OrderEvent]) -> dict[str, str]:
        """What each open order trades, by name: a buy-write names the call of its intent
        (risk's record of the intent), shares their symbol."""
        intents: dict[str, OrderIntent] = {}
        wanted = sorted({o.intent_id for o in orders if o.leg == LegKind.BUY_WRITE})
        if wanted:
            raws = await self.bus.redis.hmget(Keys.INTENT_STATUS, wanted)
            for intent_id, raw in zip(wanted, raws, strict=True):
                try:
                    intent = decode(orjson.loads(raw)["intent"], OrderIntent) if raw else None
                except (orjson.JSONDecodeError, KeyError, TypeError, MessageError) as exc:
                    log.warning("intent %s not named: %s", intent_id, exc)
                    intent = None
                if intent is not None:
                    intents[intent_id] = intent
        names = {}
        for order in orders:
            name = order.symbol
            if order.leg == LegKind.BUY_WRITE:
                name = f"{order.symbol} buy-write"
                intent = intents.get(order.intent_id)
                leg = next(
                    (x for x in intent.legs if x.kind == LegKind.BUY_WRITE), None
                ) if intent else None  # fmt: skip
                if leg is not None and leg.option_expiry and leg.option_strike:
                    call = option_name(leg.symbol, leg.option_expiry, leg.option_strike, "C")
                    name = f"{order.symbol} buy-write (100 {leg.symbol}, short 1 {call})"
            names[str(order.order_id)] = name
        return names

    @bounded
    async def risk(self) -> RiskPanel:
        latest = await self._latest_many({Keys.RISK_STATUS: RiskStatus})
        status: RiskStatus | None = latest[Keys.RISK_STATUS]
        limits = sorted(
            (
                LimitUse(name=name, used=used, breached=used >= 1.0)
                for name, used in (status.limit_usage.items() if status else ())
                if isinstance(used, int | float) and not isinstance(used, bool)
            ),
            key=lambda limit: (-limit.used, limit.name),
        )
        return RiskPanel(
            state=status.state if status else None,
            reason=status.reason if status else None,
            status=status,
            limits=limits,
            age_s=self._age(status.ts) if status else None,
        )

    @bounded
    async def health(self) -> HealthPanel:
        """Data health per instrument, named, with the time since its newest quote; every
        service's heartbeat (expected ones included); each broker connection's state."""
        now = self.clock_fn()
        reports = await self._hash(Keys.HEALTH, DataHealth)
        stocks = await self._latest_many({Keys.quote(s): Quote for s in self.instruments})
        names, option_quotes = await self._option_names()
        instruments = []
        for h in reports:
            quote = stocks.get(Keys.quote(h.symbol)) or option_quotes.get(h.symbol)
            updated = quote.ts_recv if quote is not None else None
            age = self._age(updated)
            status, reason = h.status, h.reason
            if status is DataStatus.OK and (age is None or age > self.stale_after_s):
                status = DataStatus.STALE
                reason = "no quote yet" if age is None else f"no update for {age:.0f} s"
            instruments.append(
                InstrumentHealth(
                    symbol=h.symbol,
                    name=names.get(
                        h.symbol, h.symbol if h.symbol in self.instruments else f"conId {h.symbol}"
                    ),
                    status=status,
                    reported_status=h.status,
                    reason=reason,
                    ts=h.ts,
                    updated_ts=updated,
                    age_s=age,
                )
            )
        instruments.sort(key=lambda i: (i.symbol not in self.instruments, i.name))
        beats = await self.bus.heartbeats()
        late_after = 2 * self.settings.heartbeat_interval_s
        services, gateway = [], []
        for name in sorted(set(SERVICES) | set(beats)):
            hb = beats.get(name)
            age = self._age(hb.ts) if hb else None
            services.append(
                ServiceHealth(
                    service=name,
                    status=hb.status if hb else "silent",
                    heartbeat=hb,
                    age_s=age,
                    late=age is not None and age > late_after,
                    problems=_problems(hb),
                )
            )
            state = hb.detail.get("gateway") if hb else None
            if isinstance(state, dict):
                try:
                    next_try = state.get("next_try_at")
                    gateway.append(
                        BrokerConnection(
                            service=name, status=state["status"], host=state["host"],
                            port=state["port"], attempt=state.get("attempt", 0),
                            next_try_in_s=None if next_try is None else max(0.0, next_try - now),
                            error=state.get("error", ""), down_since=state.get("down_since"),
                            age_s=age,
                        )
                    )  # fmt: skip
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("gateway state of %s not shown: %s", name, exc)
        return HealthPanel(
            instruments=instruments,
            services=services,
            gateway=gateway,
            stale_after_s=self.stale_after_s,
        )

    @bounded
    async def alerts(self, limit: int = 50) -> AlertsPanel:
        entries = await self.bus.read_range(Streams.ALERTS, limit, Alert)
        return AlertsPanel(alerts=[entry.message for entry in entries])

    @bounded
    async def healthz(self) -> Healthz:
        """How old the newest data is, by wall-clock receipt/write time (not exchange time, which
        the simulated gateway runs on its own clock)."""
        wanted: dict[str, type[Message]] = {Keys.quote(s): Quote for s in self.instruments}
        wanted.update({Keys.PNL: PnL, Keys.RISK_STATUS: RiskStatus})
        latest = await self._latest_many(wanted)
        sources: list[tuple[str, float | None]] = [
            (f"quote:{s}", q.ts_recv if (q := latest[Keys.quote(s)]) else None)
            for s in self.instruments
        ]
        for name, stream in (("spread", Streams.SPREAD), ("fills", Streams.FILLS)):
            newest = cast(RawEntries, await self.bus.redis.xrevrange(stream, count=1))
            sources.append((name, _entry_ts(newest[0][0]) if newest else None))
        sources.append(("pnl", latest[Keys.PNL].ts if latest[Keys.PNL] else None))
        risk = latest[Keys.RISK_STATUS]
        sources.append(("risk", risk.ts if risk else None))
        stamps = [ts for _, ts in sources if ts is not None]
        newest_ts = max(stamps) if stamps else None
        age = self._age(newest_ts)
        stale_after_s = self.settings.ingestion.silence_s
        status = "no_data" if age is None else ("stale" if age > stale_after_s else "ok")
        return Healthz(
            status=status,
            newest_data_ts=newest_ts,
            newest_data_age_s=age,
            stale_after_s=stale_after_s,
            sources=[DataAge(source=s, ts=ts, age_s=self._age(ts)) for s, ts in sources],
        )

    async def panel(self, name: PanelName, since: dict[str, float] | None = None) -> Any:
        """Any panel by name (the live push): series panels only send points newer than their
        cursor in `since` (series name -> timestamp; "series" for a panel with one)."""
        since = since or {}
        match name:
            case PanelName.CLOCK:
                return await self.clock()
            case PanelName.SPREAD:
                return await self.spread(since=since.get("series"))
            case PanelName.PRICES:
                return await self.prices(since_by_series=since)
            case PanelName.HEDGE:
                return await self.hedge(since=since.get("series"))
            case PanelName.OPTION:
                return await self.option()
            case PanelName.BOOK:
                return await self.book()
            case PanelName.RISK:
                return await self.risk()
            case PanelName.HEALTH:
                return await self.health()
            case PanelName.ALERTS:
                return await self.alerts()
        raise ValueError(f"panel: unknown panel {name!r}")

    # plots -----------------------------------------------------------------------------------

    async def plot(
        self,
        name: PlotName,
        limit: int = DEFAULT_POINTS,
        width_px: int = 1000,
        height_px: int = 500,
    ) -> bytes:
        """A PNG of a panel, rendered off the event loop (matplotlib takes tens of ms)."""
        match name:
            case PlotName.SPREAD:
                data: Any = await self.spread(limit)
                render: Callable[[Any, int, int], bytes] = plots.render_spread
            case PlotName.PRICES:
                data = await self.prices(limit)
                render = plots.render_prices
            case PlotName.HEDGE:
                data = await self.hedge(limit)
                render = plots.render_hedge
            case PlotName.RISK:
                data = await self.risk()
                render = plots.render_risk
            case _:
                raise ValueError(f"plot: unknown plot {name!r}")
        return await asyncio.to_thread(render, data, width_px, height_px)

    # controls --------------------------------------------------------------------------------

    @bounded
    async def send_command(
        self, command: ControlCommand, request: ControlRequest
    ) -> ControlAccepted:
        """Append an operator command for risk-management (which acts on it and acknowledges)."""
        message = OperatorCommand(
            command_id=uuid.uuid4().hex,
            ts=self.clock_fn(),
            command=command.bus_command,
            issued_by=request.issued_by,
            reason=request.reason,
            flatten=request.flatten if command is ControlCommand.KILL else False,
        )
        entry_id = await self.bus.append(Streams.COMMANDS, message)
        log.warning(
            "operator command %s sent",
            message.command,
            extra={
                "event.action": "operator_command",
                "command.id": message.command_id,
                "command.name": str(message.command),
                "user.name": message.issued_by,
            },
        )
        return ControlAccepted(
            command_id=message.command_id, command=message.command, entry_id=entry_id
        )


def _problems(hb: Heartbeat | None) -> list[str]:
    """A heartbeat's detail.problems as text (a service reports why it is degraded there)."""
    problems = hb.detail.get("problems") if hb else None
    if isinstance(problems, str):
        return [problems]
    if not isinstance(problems, list | tuple):
        return []
    return [str(p) for p in problems if p not in (None, "")]
