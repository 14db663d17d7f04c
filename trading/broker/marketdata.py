"""Market data from IB into Redis: subscriptions, data quality, connection policy, backfill.

The pure parts (which expiries and strikes to subscribe, when to re-centre, the line budget, the
error-code policy, per-instrument health, per-episode logging, history conflation) are plain
functions and small classes with unit tests. `MarketDataFeed` is the I/O around them: it is given
an `IB` on each (re)connect by `IBConnection.run` and writes through `trading.bus`.

History streams: every good quote updates its latest-value key and is published, but the capped
history stream of an instrument gets at most one entry per `history_interval_s` (default 0.25 s,
the newest quote when the interval has passed), so a 20k ticks/s burst does not become a 20k
entries/s stream; the strategy samples once per bar anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from prometheus_client import Counter, Gauge

from trading.broker.connection import GatewayState
from trading.broker.pacing import PacingGate
from trading.broker.translate import (
    BadTick,
    DropReason,
    ExchangeClock,
    GatewayClock,
    bar_end_time,
    chain_option_from_contract,
    dividends_from_ticker,
    nav_from_ticks,
    option_quote_from_ticker,
    option_quotes_from_bars,
    quote_from_bar,
    quote_from_ticker,
    receive_time,
)
from trading.bus import (
    Batch,
    Bus,
    ChainOption,
    Channels,
    DataHealth,
    DataStatus,
    Keys,
    MessageError,
    OptionChain,
    OptionQuote,
    Position,
    Quote,
    StreamEntry,
    Streams,
    decode,
    encode,
)
from trading.domain.market_hours import EXCHANGE_TIMEZONE
from trading.domain.options import is_standard_monthly
from trading.observability import histogram
from trading.settings import Settings

UNDERLYING = "TLT"
ETF = "TLTW"
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
HELD_REFRESH_S = 2.0
NO_HISTORY = "query returned no data"
"""IB's error 162 text when it has no bars for the contract (not a pacing violation)."""
"""How often the feed re-reads the book's option positions (Keys.POSITIONS)."""
GATEWAY_CLOCK_REFRESH_S = 1.0
"""How often the feed samples the gateway's clock (reqCurrentTime): the stamp of quotes whose
ticks carry no exchange time, and the date the option chain is chosen by."""

# Metrics ------------------------------------------------------------------------------------

TICKS = Counter(
    "trading_ingestion_ticks_total", "IB ticks received, per instrument", ["instrument"]
)
PUBLISHED = Counter(
    "trading_ingestion_published_total", "Good quotes published, per instrument", ["instrument"]
)
DROPS = Counter(
    "trading_ingestion_drops_total", "Ticks not published as good, per reason", ["reason"]
)
STALENESS = Gauge(
    "trading_ingestion_staleness_seconds",
    "Seconds since the instrument's last good tick",
    ["instrument"],
)
STALE = Gauge("trading_ingestion_stale", "1 while the instrument is stale", ["instrument"])
SUBSCRIPTIONS = Gauge("trading_ingestion_subscriptions", "Market data lines in use")
HELD_LINES = Gauge(
    "trading_ingestion_held_option_lines", "Lines of held options outside the strike window"
)
HELD_UNQUOTED = Gauge(
    "trading_ingestion_held_options_unquoted", "Held options left without a line (budget, unknown)"
)
RESUBSCRIPTIONS = Counter(
    "trading_ingestion_resubscriptions_total", "Market data resubscriptions, per cause", ["cause"]
)
DELAYED = Gauge("trading_ingestion_delayed", "1 while the feed runs on delayed data")
IB_EVENTS = Counter(
    "trading_ingestion_ib_events_total", "IB errors and notices handled, per action", ["action"]
)
BACKFILL_BARS = Counter(
    "trading_ingestion_backfill_bars_total", "Backfilled bars appended, per instrument",
    ["instrument"],
)  # fmt: skip
BACKFILL_REQUESTS = Counter(
    "trading_ingestion_backfill_requests_total", "Historical data requests sent", ["outcome"]
)
LATENCY = histogram(
    "trading_ingestion_receive_to_publish_seconds",
    "From the socket read that carried a tick to the Redis round trip that published it",
)


# Pure: expiries, strikes, re-centring, line budget ----------------------------------------------


def select_expiries(expiries: Iterable[str], today: date, count: int) -> tuple[str, ...]:
    """The first `count` standard monthly expiries (YYYYMMDD) on or after `today`."""
    if count < 1:
        raise ValueError(f"expiries count={count!r} must be >= 1")
    monthlies = sorted(
        e for e in set(expiries) if _as_date(e) >= today and is_standard_monthly(_as_date(e))
    )
    return tuple(monthlies[:count])


def _as_date(expiry: str) -> date:
    try:
        return datetime.strptime(expiry[:8], "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"expiry={expiry!r} is not YYYYMMDD") from None


def nearest_strike(strikes: Sequence[float], spot: float) -> float:
    """The listed strike nearest spot; a tie goes to the higher strike."""
    if not (math.isfinite(spot) and spot > 0):
        raise ValueError(f"spot={spot!r} must be finite and > 0")
    if not strikes:
        raise ValueError("strikes must not be empty")
    return min(strikes, key=lambda k: (round(abs(k - spot), 9), -k))


def strike_window(strikes: Sequence[float], spot: float, each_side: int) -> tuple[float, ...]:
    """The strike nearest spot and `each_side` listed strikes below and above it (fewer at the
    ends of the chain), ascending."""
    if each_side < 0:
        raise ValueError(f"strikes each_side={each_side!r} must be >= 0")
    ordered = sorted(set(strikes))
    centre = ordered.index(nearest_strike(ordered, spot))
    return tuple(ordered[max(0, centre - each_side) : centre + each_side + 1])


def should_recentre(
    centre: float | None, spot: float, strikes: Sequence[float], hysteresis: float = 0.2
) -> bool:
    """True when TLT has moved a strike: another strike is nearer spot than `centre` by more
    than `hysteresis` x the gap between them (so a spot wobbling at the midpoint between two
    strikes does not churn subscriptions)."""
    if centre is None:
        return True
    nearest = nearest_strike(strikes, spot)
    if nearest == centre:
        return False
    advantage = abs(spot - centre) - abs(spot - nearest)
    return advantage > hysteresis * abs(nearest - centre)


def rank_strikes(windows: dict[str, tuple[float, ...]], spot: float) -> list[tuple[str, float]]:
    """Every (expiry, strike) of the windows, most wanted first: nearest spot first, the front
    expiry before later ones at equal distance."""
    ranked = sorted(
        ((abs(k - spot), rank, expiry, k) for rank, expiry in enumerate(sorted(windows))
         for k in windows[expiry]),
    )  # fmt: skip
    return [(expiry, k) for _, _, expiry, k in ranked]


def fit_to_budget(
    windows: dict[str, tuple[float, ...]], spot: float, lines: int
) -> dict[str, tuple[float, ...]]:
    """Trim the strike windows to at most `lines` options in total: the strikes farthest from
    spot go first (front expiry kept over later ones at equal distance)."""
    if lines < 0:
        raise ValueError(f"lines={lines!r} must be >= 0")
    keep = set(rank_strikes(windows, spot)[:lines])
    return {e: tuple(k for k in ks if (e, k) in keep) for e, ks in windows.items()}


def held_options(positions: Iterable[Position]) -> frozenset[int]:
    """The con_ids the book holds options in: sec_type "OPT" and quantity != 0 (a NaN
    quantity counts as held: keeping a line costs less than losing a held contract's mark)."""
    return frozenset(p.con_id for p in positions if p.sec_type == "OPT" and p.quantity != 0)


def plan_option_lines(
    window: Sequence[int], held: Sequence[int], lines: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Share `lines` option lines between held contracts and the strike window.

    Held contracts come first: a contract the book holds must keep its mark (risk refuses to
    close a pair on a stale mark), while a window strike is only a candidate to write. So the
    held contracts (in or outside the window) take their lines first, in the order given, and
    the window strikes get what is left, most wanted first (`window` is in priority order, as
    from `rank_strikes`); a held contract inside the window stays a window line. Returns
    (window con_ids kept, held-only con_ids kept, held con_ids left without a line), each in
    the order given.
    """
    if lines < 0:
        raise ValueError(f"lines={lines!r} must be >= 0")
    window = tuple(dict.fromkeys(window))
    held = tuple(dict.fromkeys(held))
    first = set(held[:lines])
    rest = [c for c in window if c not in first][: lines - len(first)]
    kept = first | set(rest)
    in_window = set(window)
    window_kept = tuple(c for c in window if c in kept)
    held_only = tuple(c for c in held if c in kept and c not in in_window)
    unquoted = tuple(c for c in held if c not in kept)
    return window_kept, held_only, unquoted


# Pure: the connection policy --------------------------------------------------------------------


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


# Pure: health, episodes, conflation --------------------------------------------------------------


@dataclass(slots=True)
class _InstrumentHealth:
    last_good: float
    status: DataStatus | None = None  # None: not yet published
    reason: str = ""


class HealthBoard:
    """Per-instrument data health from good-tick times and feed-wide flags.

    status = STALE when the feed is flagged stale (connectivity lost, data farm down) or the
    instrument had no good tick for `silence_s`; else DELAYED when on delayed data; else OK.
    `evaluate(now)` returns the instruments whose status changed, as DataHealth messages.
    """

    def __init__(self, silence_s: float) -> None:
        if not silence_s > 0:
            raise ValueError(f"silence_s={silence_s!r} must be > 0")
        self.silence_s = silence_s
        self.instruments: dict[str, _InstrumentHealth] = {}
        self.feed_stale: dict[str, str] = {}  # cause -> reason text
        self.delayed = False

    def track(self, name: str, now: float) -> None:
        """Start watching an instrument; its silence clock starts now."""
        if name not in self.instruments:
            self.instruments[name] = _InstrumentHealth(last_good=now)

    def forget(self, name: str) -> None:
        self.instruments.pop(name, None)

    def good_tick(self, name: str, now: float) -> None:
        health = self.instruments.get(name)
        if health is not None:
            health.last_good = max(health.last_good, now)

    def restart_silence(self, now: float) -> None:
        """After a resubscription every instrument gets a fresh `silence_s` to speak."""
        for health in self.instruments.values():
            health.last_good = max(health.last_good, now)

    def set_feed_stale(self, cause: str, reason: str) -> None:
        self.feed_stale[cause] = reason

    def clear_feed_stale(self, cause: str) -> None:
        self.feed_stale.pop(cause, None)

    def status_of(self, name: str, now: float) -> tuple[DataStatus, str]:
        health = self.instruments[name]
        if self.feed_stale:
            return DataStatus.STALE, "; ".join(sorted(self.feed_stale.values()))
        silent = now - health.last_good
        if silent > self.silence_s:
            return DataStatus.STALE, f"no good tick for over {self.silence_s:g}s"
        if self.delayed:
            return DataStatus.DELAYED, "delayed market data (type 3)"
        return DataStatus.OK, ""

    def is_good(self, name: str, now: float) -> bool:
        return name in self.instruments and self.status_of(name, now)[0] is not DataStatus.STALE

    def evaluate(self, now: float) -> list[DataHealth]:
        changed = []
        for name, health in self.instruments.items():
            status, reason = self.status_of(name, now)
            if status is not health.status or reason != health.reason:
                health.status, health.reason = status, reason
                changed.append(DataHealth(name, status, reason, now))
        return changed

    def stale(self) -> list[str]:
        return sorted(n for n, h in self.instruments.items() if h.status is DataStatus.STALE)


class EpisodeLog:
    """Log a bad-data episode once: when an instrument first goes bad for a reason, and once
    when it is good again (with how many ticks were dropped), never once per tick."""

    def __init__(self) -> None:
        self._open: dict[str, dict[DropReason, int]] = {}

    def bad(self, instrument: str, reason: DropReason) -> bool:
        """Count a drop; True when it opens an episode (the caller logs it)."""
        reasons = self._open.setdefault(instrument, {})
        count = reasons.get(reason, 0)
        reasons[reason] = count + 1
        return count == 0

    def good(self, instrument: str) -> dict[DropReason, int]:
        """Close the instrument's episodes; the drops per reason (empty when there were none)."""
        return self._open.pop(instrument, {}) if self._open else {}


class HistoryConflator:
    """At most one history entry per instrument per `interval_s` of receive time."""

    def __init__(self, interval_s: float) -> None:
        if not interval_s >= 0:
            raise ValueError(f"history interval_s={interval_s!r} must be >= 0")
        self.interval_s = interval_s
        self._last: dict[str, float] = {}

    def due(self, instrument: str, ts: float) -> bool:
        last = self._last.get(instrument)
        if last is not None and ts - last < self.interval_s:
            return False
        self._last[instrument] = ts
        return True


# The feed ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Line:
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


@dataclass(slots=True)
class _Chain:
    expiries: tuple[str, ...] = ()
    strikes: tuple[float, ...] = ()
    calls: dict[str, dict[float, Any]] = field(default_factory=dict)  # expiry -> strike -> Contract


class MarketDataFeed:
    """Subscribes TLT, TLTW (with NAV) and the calls around the money; writes good ticks to
    Redis; flags bad, silent and delayed data; follows IB's connection notices; backfills.

    Held options: every option the book holds (a non-zero "OPT" position in Keys.POSITIONS,
    re-read every `held_refresh_s` and on each (re)connect) stays subscribed even when it is
    outside the strike window or in an expiry no longer selected, so risk always has its mark.
    Held contracts take priority over window strikes for the market data line budget (see
    `plan_option_lines`). A held contract the feed does not know is qualified by conId. Its
    quotes go where window quotes go (Keys.option, Keys.OPTION_INDEX, Channels.OPTIONS, its
    history stream, md:health), but a held-only contract is NOT in the OptionChain's
    `subscribed`: the strategy picks strikes to write among `subscribed`, and a contract held
    only because the window left it is not a strike to write. Its line is released once the
    position is zero (unless the window wants it again).

    `on_connected(ib)` is the callback for `IBConnection.run` and `on_error` its error
    handler; `run()` is the writer and health loop the service runs beside the connection.
    """

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        library: Any,
        log: logging.Logger | None = None,
        status: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        pacing: PacingGate | None = None,
        held_refresh_s: float = HELD_REFRESH_S,
    ) -> None:
        if not (math.isfinite(held_refresh_s) and held_refresh_s > 0):
            raise ValueError(f"held_refresh_s={held_refresh_s!r} must be finite and > 0")
        self.settings = settings
        self.cfg = settings.ingestion
        self.bus = bus
        self.lib = library
        self.log = log or logging.getLogger("data-ingestion")
        self.status = status if status is not None else {}
        self.clock = clock
        self.pacing = pacing or PacingGate()
        self.health = HealthBoard(self.cfg.silence_s)
        self.episodes = EpisodeLog()
        self.conflator = HistoryConflator(self.cfg.history_interval_s)
        self.exchange_clock = ExchangeClock()
        """The connection's exchange time, stamped on every quote (see `ExchangeClock`)."""
        self.gateway_clock = GatewayClock()
        """The gateway's clock from reqCurrentTime, sampled every GATEWAY_CLOCK_REFRESH_S:
        the exchange clock's stand-in while no tick carries a trade time (ib_insync)."""
        self.ib: Any = None
        self.lines: dict[int, _Line] = {}  # con_id -> line: this session's subscriptions
        self.stocks: dict[str, Any] = {}  # symbol -> qualified Contract
        self.chain = _Chain()
        self.centre: float | None = None
        self.spot: float | None = None
        self.delayed = settings.ib.market_data_type in (3, 4)
        self.health.delayed = self.delayed
        self.farms_down: set[str] = set()
        self.history_farm_down = False
        self.latencies: list[float] | None = None  # the benchmark collects here when set
        self.ticks_received = 0
        self.quotes_published = 0
        self._options_published: set[int] = set()  # con_ids in OPTION_INDEX / HEALTH
        self._batch = Batch()  # publishes, history entries, deletions: in order
        self._latest: dict[str, bytes] = {}  # key -> newest value: one MSET per round
        self._last_dividends: dict[str, tuple] = {}
        self._index: dict[str, bytes] = {}  # con_id -> newest option: one HSET per round
        self._batch_ts: list[float] = []
        self._batch_lines: list[_Line] = []
        self._flush_wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._recentring = False
        self._backfilling = False
        self._backfill_queue: list[str] = []
        self._underlying_bars: dict[float, float] = {}
        self._history_held: dict[str, list[tuple[float, bytes]]] = {}
        self._connected = False
        self._check_after: float | None = None
        self.held_refresh_s = held_refresh_s
        self.held: frozenset[int] = frozenset()  # con_ids of options the book holds
        self.held_lines: tuple[int, ...] = ()  # held con_ids subscribed outside the window
        self.held_unquoted: tuple[int, ...] = ()  # held con_ids without a line
        self._held_contracts: dict[int, Any] = {}  # held con_id -> qualified Contract
        self._held_planned: frozenset[int] = frozenset()  # _held_contracts at the last plan
        self._held_logged: set[int | str] = set()  # problems logged once (bad entry, unknown)
        self._window_spot: float | None = None  # the spot the lines were last planned on
        self._held_lock = asyncio.Lock()  # one positions read and qualification at a time
        self._setting_up = False  # on_connected is (re)building the session's lines

    # lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """The writer and health loops, for the life of the service."""
        await asyncio.gather(
            self._writer(), self._health_loop(), self._held_loop(), self._gateway_clock_loop()
        )

    async def on_connected(self, ib: Any) -> None:
        """Set up a fresh IB session: the library forgot every subscription, so all are
        requested again, and the backfill runs again to fill the gap the outage left."""
        self._setting_up = True
        self.exchange_clock.reset()
        self.gateway_clock.reset()
        try:
            await self._set_up(ib)
        finally:
            self._setting_up = False

    async def _set_up(self, ib: Any) -> None:
        self.ib = ib
        self._connected = True
        self.lines.clear()
        self.centre = None
        self.farms_down.clear()
        self.health.clear_feed_stale("farm")
        self.health.clear_feed_stale("connectivity")
        self.health.clear_feed_stale("connection")
        for event, handler in (
            (ib.pendingTickersEvent, self._on_tickers),
            (ib.disconnectedEvent, self._on_disconnected),
        ):
            with contextlib.suppress(ValueError):
                event -= handler
            event += handler
        ib.reqMarketDataType(self._market_data_type())
        await self.sample_gateway_clock(ib)
        tlt, tltw = await self._qualify_stocks(ib)
        self._subscribe(_Line(UNDERLYING, tlt, generic_ticks=STOCK_GENERIC_TICKS))
        self._subscribe(_Line(ETF, tltw, generic_ticks=ETF_GENERIC_TICKS))
        self._update_status()
        self._queue_backfill([UNDERLYING, ETF])
        await self._load_chain(ib, tlt)
        try:
            await self.refresh_held(replan=False)  # the first plan below includes them
        except (ConnectionError, OSError, TimeoutError) as exc:
            # Redis unreachable: keep the held set we had; the held loop tries again.
            self.log.error(
                "could not read positions at connect: %r", exc,
                extra={"event.action": "held_options_failed"},
            )  # fmt: skip
        if self.spot is not None and self.centre is None:
            await self._recentre(self.spot)

    def _market_data_type(self) -> int:
        return DELAYED_MARKET_DATA if self.delayed else self.settings.ib.market_data_type

    def _on_disconnected(self) -> None:
        self._connected = False
        self.health.set_feed_stale("connection", "IB connection lost")
        self._update_status()
        self._spawn(self.publish_health())

    async def _qualify_stocks(self, ib: Any) -> tuple[Any, Any]:
        wanted = [self.lib.Stock(UNDERLYING, "SMART", "USD"), self.lib.Stock(ETF, "SMART", "USD")]
        qualified = await ib.qualifyContractsAsync(*wanted)
        found = {c.symbol: c for c in qualified if c is not None and c.conId}
        missing = [s for s in (UNDERLYING, ETF) if s not in found]
        if missing:
            # IB could not say what these are right now: reconnecting retries with backoff.
            raise ConnectionError(f"could not qualify {missing} with IB")
        self.stocks = found
        return found[UNDERLYING], found[ETF]

    async def _load_chain(self, ib: Any, tlt: Any) -> None:
        params = await ib.reqSecDefOptParamsAsync(UNDERLYING, "", "STK", tlt.conId)
        chosen = [p for p in params if p.exchange == "SMART"] or list(params)
        if not chosen:
            raise ConnectionError("IB returned no option chain for TLT")
        expiries = sorted({e for p in chosen for e in p.expirations})
        strikes = sorted({float(k) for p in chosen for k in p.strikes})
        today = self.exchange_today()
        selected = select_expiries(expiries, today, self.cfg.expiries)
        calls: dict[str, dict[float, Any]] = {}
        for expiry in selected:
            # One request per expiry lists the strikes that really exist for it (the sec-def
            # strikes are the union over all expiries) with their conIds.
            pattern = self.lib.Option(UNDERLYING, expiry, 0.0, "C", "SMART", currency="USD")
            details = await ib.reqContractDetailsAsync(pattern)
            calls[expiry] = {
                float(d.contract.strike): d.contract
                for d in details
                if d.contract.right in ("C", "CALL") and d.contract.conId
            }
        self.chain = _Chain(tuple(expiries), tuple(strikes), calls)
        self.log.info(
            "option chain: %d expiries, %d strikes; subscribing calls of %s",
            len(expiries), len(strikes), list(selected),
            extra={"event.action": "chain_loaded"},
        )  # fmt: skip

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

    async def _gateway_clock_loop(self) -> None:
        while True:
            await asyncio.sleep(GATEWAY_CLOCK_REFRESH_S)
            if self.ib is None or not self._connected or self._setting_up:
                continue  # on_connected takes the first sample itself
            try:
                async with asyncio.timeout(self.settings.ib.connect_timeout_s):
                    await self.sample_gateway_clock(self.ib)
            except (ConnectionError, OSError, TimeoutError) as exc:
                self.log.warning(
                    "gateway clock not sampled: %r", exc,
                    extra={"event.action": "gateway_clock_failed"},
                )  # fmt: skip

    # subscriptions ------------------------------------------------------------------------

    def _subscribe(self, line: _Line, cause: str = "") -> None:
        self.lines[line.contract.conId] = line
        self.ib.reqMktData(line.contract, line.generic_ticks, False, False)
        self.health.track(line.name, self.clock())
        if cause:
            RESUBSCRIPTIONS.labels(cause).inc()
        SUBSCRIPTIONS.set(len(self.lines))

    def _unsubscribe(self, con_id: int) -> _Line | None:
        line = self.lines.pop(con_id, None)
        if line is not None and self._connected:
            self.ib.cancelMktData(line.contract)
        SUBSCRIPTIONS.set(len(self.lines))
        return line

    # held options -------------------------------------------------------------------------

    async def _held_loop(self) -> None:
        """Re-read the book's option positions every `held_refresh_s` while connected."""
        while True:
            await asyncio.sleep(self.held_refresh_s)
            if not self._connected or self._setting_up:
                continue  # on_connected reads the positions itself
            try:
                await self.roll_chain()
                await self.refresh_held()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must outlive a Redis or IB hiccup
                self.log.error(
                    "held options refresh failed: %r", exc, exc_info=exc,
                    extra={"event.action": "held_options_failed"},
                )  # fmt: skip

    async def roll_chain(self) -> None:
        """After an expiry (IB's date past the front one), load the chain again and subscribe
        the next expiry's calls: the service runs for months, not from one reconnect to the
        next (the expired calls would stay subscribed, silent, and the feed degraded)."""
        if not self.chain.calls or self.ib is None or UNDERLYING not in self.stocks:
            return
        today = self.exchange_today()
        wanted = select_expiries(self.chain.expiries, today, self.cfg.expiries)
        if wanted == tuple(sorted(self.chain.calls)):
            return
        self.log.info(
            "expiry passed: loading the option chain again for %s", list(wanted),
            extra={"event.action": "chain_rolled"},
        )  # fmt: skip
        await self._load_chain(self.ib, self.stocks[UNDERLYING])
        spot = self._window_spot if self._window_spot is not None else self.spot
        if spot is not None:
            await self._recentre(spot)

    async def refresh_held(self, replan: bool = True) -> None:
        """Read Keys.POSITIONS, qualify held options the feed does not know, and (with
        `replan`) re-plan the lines when the set of held contracts changed. A position entry
        that does not decode keeps its contract held if it was (a bad entry never releases a
        line)."""
        async with self._held_lock:
            await self._refresh_held(replan)

    async def _refresh_held(self, replan: bool) -> None:
        raw = await self.bus.redis.hgetall(Keys.POSITIONS)
        held: set[int] = set()
        for member, value in raw.items():
            name = member.decode() if isinstance(member, bytes) else str(member)
            try:
                position = decode(value, Position)
            except MessageError as exc:
                if name not in self._held_logged:
                    self._held_logged.add(name)
                    self.log.error(
                        "bad position %s[%s]: %s", Keys.POSITIONS, name, exc,
                        extra={"event.action": "bad_position", "instrument.name": name},
                    )  # fmt: skip
                if name.isdigit() and int(name) in self.held:
                    held.add(int(name))
                continue
            held |= held_options([position])
        self.held = frozenset(held)
        for con_id in [c for c in self._held_contracts if c not in held]:
            del self._held_contracts[con_id]
        if self.ib is not None and self._connected:
            known = {
                c.conId: c for calls in self.chain.calls.values() for c in calls.values()
            }  # fmt: skip
            for con_id in sorted(held - set(self._held_contracts)):
                contract = known.get(con_id) or await self._qualify_held(con_id)
                if contract is not None and con_id in self.held:
                    self._held_contracts[con_id] = contract
        changed = frozenset(self._held_contracts) != self._held_planned
        if replan and changed and self._connected and self._window_spot is not None:
            await self._recentre(self._window_spot)
        elif self._window_spot is not None:
            self._note_unquoted()

    async def _qualify_held(self, con_id: int) -> Any | None:
        """The option Contract IB knows by this conId (SMART routed), or None (logged once)."""
        details = await self.ib.reqContractDetailsAsync(self.lib.Contract(conId=con_id))
        found = [d.contract for d in details or [] if d.contract and d.contract.conId == con_id]
        contract = next((c for c in found if c.exchange == "SMART"), found[0] if found else None)
        problem = "" if contract is not None else "IB knows no contract with this conId"
        if contract is not None:
            try:
                chain_option_from_contract(contract)
            except ValueError as exc:
                problem, contract = str(exc), None
        if contract is None:
            if con_id not in self._held_logged:
                self._held_logged.add(con_id)
                self.log.error(
                    "held option %s cannot be quoted: %s", con_id, problem,
                    extra={"event.action": "held_option_unknown", "instrument.name": str(con_id)},
                )  # fmt: skip
            return None
        self._held_logged.discard(con_id)
        if not contract.exchange:
            contract.exchange = "SMART"
        self.log.info(
            "held option %s (%s) qualified by conId", con_id, contract.localSymbol,
            extra={"event.action": "held_option_qualified", "instrument.name": str(con_id)},
        )  # fmt: skip
        return contract

    def _note_unquoted(self) -> None:
        """Log (on change) and count the held options that have no line: unknown to IB or
        beyond the line budget; risk will see their marks go stale."""
        unquoted = tuple(sorted(c for c in self.held if c not in self.lines))
        if unquoted != self.held_unquoted and unquoted:
            self.log.warning(
                "held options without a market data line (stale marks): %s", list(unquoted),
                extra={"event.action": "held_options_unquoted"},
            )  # fmt: skip
        self.held_unquoted = unquoted
        HELD_UNQUOTED.set(len(unquoted))
        HELD_LINES.set(len(self.held_lines))

    def resubscribe(self, lines: Iterable[_Line], cause: str) -> None:
        """Cancel and request lines again, with a fresh silence allowance."""
        if self.ib is None or not self._connected:
            return
        lines = list(lines)
        for line in lines:
            self._unsubscribe(line.contract.conId)
        self.ib.reqMarketDataType(self._market_data_type())
        for line in lines:
            self._subscribe(line, cause)
        self.health.restart_silence(self.clock())
        self.log.info(
            "resubscribed %d lines (%s)", len(lines), cause,
            extra={"event.action": "resubscribed", "event.reason": cause},
        )  # fmt: skip

    def resubscribe_all(self, cause: str) -> None:
        self.resubscribe(self.lines.values(), cause)

    async def _recentre(self, spot: float) -> None:
        """Subscribe the calls around spot for each selected expiry; drop those that left."""
        if not self.chain.calls or not self._connected:
            return
        windows = {
            expiry: strike_window(sorted(calls), spot, self.cfg.strikes_each_side)
            for expiry, calls in self.chain.calls.items()
            if calls
        }
        stock_lines = sum(1 for ln in self.lines.values() if ln.option is None)
        budget = max(self.cfg.max_market_data_lines - stock_lines, 0)
        ranked = rank_strikes(windows, spot)
        window_contracts = {self.chain.calls[e][k].conId: self.chain.calls[e][k] for e, k in ranked}
        held = sorted(self._held_contracts, key=lambda c: _contract_order(self._held_contracts[c]))
        window_kept, held_only, _ = plan_option_lines(list(window_contracts), held, budget)
        wanted = {c: window_contracts[c] for c in window_kept}
        wanted |= {c: self._held_contracts[c] for c in held_only}
        self._held_planned = frozenset(self._held_contracts)
        self._window_spot = spot
        self.held_lines = held_only
        subscribed = {c for c, ln in self.lines.items() if ln.option is not None}
        added = [c for c in wanted if c not in subscribed]
        for con_id in subscribed - set(wanted):
            self._unsubscribe(con_id)
        for con_id in added:
            option = chain_option_from_contract(wanted[con_id])
            self._subscribe(_Line(str(con_id), wanted[con_id], option, OPTION_GENERIC_TICKS))
        # Queued before the next await, so the first live entries are held for the backfill.
        self._queue_backfill([str(c) for c in added])
        gone = self._options_published - set(wanted)
        for con_id in gone:
            self.health.forget(str(con_id))
        self._options_published = set(wanted)
        kept = set(window_kept)
        window_strikes = {float(window_contracts[c].strike) for c in kept}
        self.centre = nearest_strike(sorted(window_strikes or {k for _, k in ranked}), spot)
        chain = OptionChain(
            underlying=UNDERLYING,
            underlying_con_id=self.stocks[UNDERLYING].conId,
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
        # Through the writer's batch, with the dropped calls' queued values discarded, so no
        # late tick puts a dropped call back into the index.
        for con_id in gone:
            self._latest.pop(Keys.option(con_id), None)
            self._index.pop(str(con_id), None)
        batch = self._batch
        batch.hdel(Keys.OPTION_INDEX, *(str(c) for c in gone))
        batch.hdel(Keys.HEALTH, *(str(c) for c in gone))
        batch.set_latest(Keys.CHAIN, encode(chain))
        self._flush_wake.set()
        self._note_unquoted()
        self._update_status()
        self.log.info(
            "calls centred on strike %s (TLT %.2f): %d added, %d dropped, %d lines (%d held"
            " outside the window)",
            self.centre, spot, len(added), len(gone), len(self.lines), len(held_only),
            extra={"event.action": "options_recentred"},
        )  # fmt: skip

    def _maybe_recentre(self, spot: float) -> None:
        self.spot = spot
        if self._recentring or not self.chain.calls or not self._connected:
            return
        strikes = sorted({k for calls in self.chain.calls.values() for k in calls})
        if not should_recentre(self.centre, spot, strikes, self.cfg.recentre_hysteresis):
            return
        self._recentring = True

        async def run() -> None:
            try:
                await self._recentre(spot)
            finally:
                self._recentring = False

        self._spawn(run())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.log.error(
                    "market data task failed: %r", t.exception(), exc_info=t.exception(),
                    extra={"event.action": "task_failed"},
                )  # fmt: skip

        task.add_done_callback(done)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ticks --------------------------------------------------------------------------------

    def _on_tickers(self, tickers: Iterable[Any]) -> None:
        """pendingTickersEvent: translate each updated ticker and queue its writes. It runs
        inside the client's socket callback, so it only queues; the writer task sends."""
        now = self.clock()
        batch = self._batch
        ts_exchange = self.exchange_clock.update(tickers, self.gateway_clock.now(now))
        for ticker in tickers:
            contract = ticker.contract
            line = self.lines.get(contract.conId) if contract is not None else None
            if line is None:
                continue
            name = line.name
            n_ticks = len(ticker.ticks) or 1
            self.ticks_received += n_ticks
            line.ticks_metric.inc(n_ticks)
            ts_recv = receive_time(ticker, now)
            delayed = self.delayed or ticker.marketDataType in (3, 4)
            try:
                if line.option is None:
                    msg: Quote | OptionQuote = quote_from_ticker(
                        ticker, name, contract.conId, ts_recv, delayed, ts_exchange
                    )
                else:
                    msg = option_quote_from_ticker(
                        ticker, line.option, ts_recv, self.cfg.max_implied_vol, delayed,
                        ts_exchange=ts_exchange,
                    )  # fmt: skip
            except BadTick as bad:
                self._drop(name, bad)
                continue
            data = encode(msg)
            # Every good tick is published; the latest-value keys only need the newest.
            if line.option is None:
                self._latest[Keys.quote(name)] = data
                batch.publish(Channels.QUOTES, data)
            else:
                self._latest[Keys.option(contract.conId)] = data
                self._index[name] = data
                batch.publish(Channels.OPTIONS, data)
            if self.conflator.due(name, ts_recv):
                held = self._history_held.get(name)
                if held is not None:
                    held.append((msg.ts_exchange, data))
                else:
                    batch.append(Streams.history(name), data, self.cfg.history_maxlen)
            self._batch_ts.append(ts_recv)
            self._batch_lines.append(line)
            self.health.good_tick(name, ts_recv)
            closed = self.episodes.good(name)
            if closed:
                self.log.info(
                    "%s good again after %s", name, {r.value: n for r, n in closed.items()},
                    extra={"event.action": "bad_data_recovered", "instrument.name": name},
                )  # fmt: skip
            if name == ETF:
                self._nav(ticker, msg.ts_exchange, ts_recv, batch)
                self._dividends(ETF, ticker, msg.ts_exchange, batch)
            elif name == UNDERLYING:
                self._dividends(UNDERLYING, ticker, msg.ts_exchange, batch)
                self._maybe_recentre((msg.bid + msg.ask) / 2.0)
        if batch.commands or self._latest:
            self._flush_wake.set()

    def _nav(self, ticker: Any, ts_exchange: float, ts_recv: float, batch: Batch) -> None:
        try:
            nav = nav_from_ticks(ticker.ticks, ETF, ts_exchange, ts_recv)
        except BadTick as bad:
            self._drop(ETF, bad)
            return
        if nav is not None:
            data = encode(nav)
            self._latest[Keys.nav(ETF)] = data
            batch.publish(Channels.NAV, data)
            # Recorded like the quotes' history: a replay of the tape needs the NAV the
            # strategy's delta hedge used (trading.backtest.recorded).
            if self.conflator.due(f"{ETF}:nav", ts_recv):
                batch.append(Streams.nav_history(ETF), data, self.cfg.history_maxlen)

    def _dividends(self, symbol: str, ticker: Any, ts_exchange: float, batch: Batch) -> None:
        """Publish the distributions when IB's dividend tick changes (once a session or so)."""
        try:
            div = dividends_from_ticker(ticker, symbol, ts_exchange)
        except BadTick as bad:
            self._drop(symbol, bad)
            return
        if div is None:
            return
        key = (div.past_12m, div.next_12m, div.next_ex_date, div.next_amount)
        if key == self._last_dividends.get(symbol):
            return
        self._last_dividends[symbol] = key
        data = encode(div)
        self._latest[Keys.dividends(symbol)] = data
        batch.publish(Channels.NAV, data)
        batch.append(Streams.dividends_history(symbol), data, self.cfg.history_maxlen)

    def _drop(self, name: str, bad: BadTick) -> None:
        DROPS.labels(bad.reason.value).inc()
        if self.episodes.bad(name, bad.reason):
            self.log.warning(
                "bad data from IB not published: %s", bad,
                extra={"event.action": "bad_data", "event.reason": bad.reason.value,
                       "instrument.name": name},
            )  # fmt: skip

    async def _writer(self) -> None:
        """Send what the tick handler queued, one pipeline per round; ticks arriving while a
        round is in flight go in the next one (so a burst costs few round trips)."""
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            if not (self._batch.commands or self._latest):
                continue
            batch = Batch()
            batch.set_many(self._latest)
            batch.hset_many(Keys.OPTION_INDEX, self._index)
            batch.commands.extend(self._batch.commands)
            stamps, lines = self._batch_ts, self._batch_lines
            self._batch, self._batch_ts, self._batch_lines = Batch(), [], []
            self._latest, self._index = {}, {}
            await self.bus.execute(batch)
            done = time.time()
            self.quotes_published += len(stamps)
            for line in lines:
                line.published_metric.inc()
            for ts in stamps:
                LATENCY.observe(done - ts)
            if self.latencies is not None:
                self.latencies.extend(done - ts for ts in stamps)

    # health -------------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        interval = min(max(self.cfg.silence_s / 4.0, 0.05), 1.0)
        while True:
            await self.publish_health()
            await asyncio.sleep(interval)

    async def publish_health(self) -> None:
        """Publish every instrument whose health changed (HSET md:health + ch:health)."""
        now = self.clock()
        if self._check_after is not None and now >= self._check_after:
            self._check_after = None
            self._check_subscriptions(now)
        changes = self.health.evaluate(now)
        for name, h in self.health.instruments.items():
            STALENESS.labels(name).set(max(now - h.last_good, 0.0))
            STALE.labels(name).set(1 if h.status is DataStatus.STALE else 0)
        if not changes:
            return
        self._update_status()  # the heartbeat agrees with md:health from the moment it is sent
        batch = Batch()
        for change in changes:
            data = encode(change)
            batch.hset_latest(Keys.HEALTH, change.symbol, data)
            batch.publish(Channels.HEALTH, data)
        await self.bus.execute(batch)
        for change in changes:
            level = logging.INFO if change.status is DataStatus.OK else logging.WARNING
            self.log.log(
                level, "%s data %s %s", change.symbol, change.status.value, change.reason,
                extra={"event.action": "data_health", "instrument.name": change.symbol,
                       "event.outcome": change.status.value},
            )  # fmt: skip

    def _check_subscriptions(self, now: float) -> None:
        """After 1102 (connectivity restored, data kept): lines still silent are requested
        again; the others kept flowing, as IB promised."""
        silent = [
            ln for ln in self.lines.values()
            if ln.name in self.health.instruments
            and now - self.health.instruments[ln.name].last_good > self.health.silence_s / 2
        ]  # fmt: skip
        if silent:
            self.resubscribe(silent, "check_after_1102")

    def on_gateway_state(self, state: GatewayState) -> None:
        """The connection's state, into the heartbeat (where the dashboard shows it)."""
        self.status["gateway"] = state.as_detail()
        self._update_status()

    def _update_status(self) -> None:
        stale = self.health.stale()
        self.status.update(
            state="degraded" if stale or self.delayed or not self._connected else "ok",
            connected=self._connected,
            lines=len(self.lines),
            stale=stale[:20],
            delayed=self.delayed,
            centre_strike=self.centre,
            held_lines=len(self.held_lines),
            held_unquoted=list(self.held_unquoted[:20]),
            history_farm_down=self.history_farm_down,
            backfill_pending=len(self._backfill_queue) + (1 if self._backfilling else 0),
        )
        DELAYED.set(1 if self.delayed else 0)

    # connection policy --------------------------------------------------------------------

    def on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        """IB errorEvent handler: apply ERROR_POLICY; none of it needs a restart."""
        action = error_action(code)
        IB_EVENTS.labels(action.value).inc()
        extra = {"event.action": f"ib_{action.value}", "error.code": str(code), "ib.req_id": req_id}
        level = logging.INFO if action in _QUIET_ACTIONS else logging.WARNING
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
        elif action is ErrorAction.HISTORY_FARM_OK and self.history_farm_down:
            self.history_farm_down = False
            self._kick_backfill()
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
        self._update_status()
        if action not in _QUIET_ACTIONS:
            self._spawn(self.publish_health())

    # backfill -----------------------------------------------------------------------------

    def _queue_backfill(self, names: Iterable[str]) -> None:
        for name in names:
            if name not in self._backfill_queue:
                self._backfill_queue.append(name)
                self._history_held.setdefault(name, [])
        self._kick_backfill()

    def _kick_backfill(self) -> None:
        if not self._backfill_queue or self._backfilling:
            return
        self._backfilling = True

        async def run() -> None:
            try:
                await self._backfill()
            finally:
                self._backfilling = False
                self._update_status()

        self._spawn(run())

    async def _backfill(self) -> None:
        """Request bars for each queued instrument, paced, TLT first (the options' Greeks
        need its bars); an instrument whose request failed goes to the back of the queue."""
        while self._backfill_queue and self._connected and not self.history_farm_down:
            name = self._backfill_queue[0]
            line = next((ln for ln in self.lines.values() if ln.name == name), None)
            if line is None:  # unsubscribed meanwhile
                self._backfill_queue.pop(0)
                self._release_history(name)
                continue
            waits_for_underlying = UNDERLYING in self._backfill_queue
            if line.option is not None and not self._underlying_bars and waits_for_underlying:
                self._backfill_queue.append(self._backfill_queue.pop(0))
                continue
            bars = await self._history_bars(line.contract)
            if bars is None:
                self._backfill_queue.append(self._backfill_queue.pop(0))
                await asyncio.sleep(self.cfg.backfill_retry_s)
                continue
            self._backfill_queue.pop(0)
            if name == UNDERLYING:
                self._underlying_bars = dict(bars)
            await self._append_backfill(line, bars)

    async def _history_bars(self, contract: Any) -> list[tuple[float, float]] | None:
        """(bar end epoch, close) MIDPOINT bars, or None when IB answered with an error."""
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

    async def _append_backfill(self, line: _Line, bars: list[tuple[float, float]]) -> None:
        """Append bars newer than the stream's newest entry (so a reconnect fills only the gap)
        and older than the first live entry held meanwhile; then release the held entries."""
        name = line.name
        stream = Streams.history(name)
        newest: list[StreamEntry[Quote | OptionQuote]] = await self.bus.read_range(stream, 1)
        after = newest[0].message.ts_exchange if newest else -math.inf
        held = self._history_held.get(name) or []
        before = min((ts for ts, _ in held), default=math.inf)
        bars = [(t, c) for t, c in bars if after < t < before]
        now = self.clock()
        messages: list[Quote | OptionQuote] = []
        dropped = 0
        if line.option is None:
            for t, close in bars:
                try:
                    messages.append(quote_from_bar(name, line.contract.conId, close, t, now))
                except BadTick:
                    dropped += 1
        else:
            usable = [(t, c) for t, c in bars if t in self._underlying_bars]
            quotes, dropped = option_quotes_from_bars(
                line.option, [c for _, c in usable],
                [self._underlying_bars[t] for t, _ in usable], [t for t, _ in usable], now,
                self.cfg.backfill_rate, self.cfg.backfill_div_yield, self.cfg.max_implied_vol,
            )  # fmt: skip
            messages.extend(quotes)
            dropped += len(bars) - len(usable)
        batch = Batch()
        for msg in messages:
            batch.append(stream, encode(msg), self.cfg.history_maxlen)
        for _, data in self._history_held.pop(name, None) or []:
            batch.append(stream, data, self.cfg.history_maxlen)
        await self.bus.execute(batch)
        BACKFILL_BARS.labels(name).inc(len(messages))
        self.log.info(
            "backfilled %s: %d bars appended (%d unusable)", name, len(messages), dropped,
            extra={"event.action": "backfilled", "instrument.name": name},
        )  # fmt: skip

    def _release_history(self, name: str) -> None:
        held = self._history_held.pop(name, None)
        if held:
            batch = Batch()
            for _, data in held:
                batch.append(Streams.history(name), data, self.cfg.history_maxlen)
            self._spawn(self.bus.execute(batch))


_QUIET_ACTIONS = frozenset(
    {ErrorAction.NOTICE, ErrorAction.DATA_FARM_OK, ErrorAction.HISTORY_FARM_OK}
)


def _contract_order(contract: Any) -> tuple[str, float, int]:
    """Held contracts by expiry, strike, conId: a deterministic order for the line budget."""
    return (str(contract.lastTradeDateOrContractMonth), float(contract.strike), contract.conId)


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
