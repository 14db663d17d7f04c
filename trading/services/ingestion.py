"""data-ingestion's I/O shell: IB market data (through `trading.broker.marketdata`) into Redis.

`MarketDataFeed` wires the broker's `MarketDataLines` (subscriptions, IB's notices, tick
translation, historical bars) to the bus: good quotes go to their latest-value keys, pub/sub
channels and history streams; the option chain, the data health, the distributions and NAV are
published; the backfill fills the history streams; the heartbeat says what the feed cannot do.
`data-ingestion/data_ingestion.py` builds it beside an `IBConnection`.

History streams: every good quote updates its latest-value key and is published, but the capped
history stream of an instrument gets at most one entry per `history_interval_s` (default 0.25 s,
the newest quote when the interval has passed), so a 20k ticks/s burst does not become a 20k
entries/s stream; the strategy samples once per bar anyway.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter, Gauge

from trading.aio import stop_tasks
from trading.broker.chain import held_options, qualify_by_con_id
from trading.broker.connection import GatewayState
from trading.broker.health import EpisodeLog
from trading.broker.marketdata import QUIET_ACTIONS, ErrorAction, Line, MarketDataLines
from trading.broker.pacing import PacingGate
from trading.broker.translate import (
    BadTick,
    dividends_from_ticker,
    nav_from_ticks,
    option_quotes_from_bars,
    quote_from_bar,
    receive_time,
)
from trading.bus import (
    Batch,
    Bus,
    Channels,
    DataHealth,
    DataStatus,
    Keys,
    MessageError,
    OptionQuote,
    Position,
    Quote,
    Sender,
    StreamEntry,
    Streams,
    decode,
    encode,
)
from trading.observability import histogram
from trading.settings import Settings

HELD_REFRESH_S = 2.0
"""How often the feed re-reads the book's option positions (Keys.POSITIONS)."""
GATEWAY_CLOCK_REFRESH_S = 1.0
"""How often the feed samples the gateway's clock (reqCurrentTime): the stamp of quotes whose
ticks carry no exchange time, and the date the option chain is chosen by."""

DROPS = Counter(
    "trading_ingestion_drops_total", "Ticks not published as good, per reason", ["reason"]
)
STALENESS = Gauge(
    "trading_ingestion_staleness_seconds",
    "Seconds since the instrument's last good tick",
    ["instrument"],
)
STALE = Gauge("trading_ingestion_stale", "1 while the instrument is stale", ["instrument"])
HELD_LINES = Gauge(
    "trading_ingestion_held_option_lines", "Lines of held options outside the strike window"
)
HELD_UNQUOTED = Gauge(
    "trading_ingestion_held_options_unquoted", "Held options left without a line (budget, unknown)"
)
DELAYED = Gauge("trading_ingestion_delayed", "1 while the feed runs on delayed data")
BACKFILL_BARS = Counter(
    "trading_ingestion_backfill_bars_total", "Backfilled bars appended, per instrument",
    ["instrument"],
)  # fmt: skip
LATENCY = histogram(
    "trading_ingestion_receive_to_publish_seconds",
    "From the socket read that carried a tick to the Redis round trip that published it",
)


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
    The IB side (lines, chain, health board, clocks) is `self.md`, a `MarketDataLines`.
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
        self.md = MarketDataLines(settings, library, self.log, clock, pacing)
        self.health = self.md.health
        self.episodes = EpisodeLog()
        self.conflator = HistoryConflator(self.cfg.history_interval_s)
        self.latencies: list[float] | None = None  # the benchmark collects here when set
        self.ticks_received = 0
        self.quotes_published = 0
        self._options_published: set[int] = set()  # con_ids in OPTION_INDEX / HEALTH
        # Every write of ticks, history and the chain, in the order made, each batch written
        # when it is made (in the socket's callback: no wait for the event loop).
        self.sender = Sender(bus)
        self._last_dividends: dict[str, tuple] = {}
        self._dividend_ticks: dict[str, Any] = {}  # symbol -> the ticker's last dividends seen
        self._health_lock = asyncio.Lock()  # health written in the order it was evaluated
        self._tasks: set[asyncio.Task] = set()
        self._recentring = False
        self._backfilling = False
        self._backfill_queue: list[str] = []
        self._underlying_bars: dict[float, float] = {}
        self._history_held: dict[str, list[tuple[float, bytes]]] = {}
        self.held_refresh_s = held_refresh_s
        self.held: frozenset[int] = frozenset()  # con_ids of options the book holds
        self.held_unquoted: tuple[int, ...] = ()  # held con_ids without a line
        self._held_contracts: dict[int, Any] = {}  # held con_id -> qualified Contract
        self._held_logged: set[int | str] = set()  # problems logged once (bad entry, unknown)
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
        try:
            await self._set_up(ib)
        finally:
            self._setting_up = False

    async def _set_up(self, ib: Any) -> None:
        await self.md.start(ib, self._on_tickers, self._on_disconnected)
        self._update_status()
        self._queue_backfill(list(self.md.pair.stocks))
        await self.md.load_chain()
        try:
            await self.refresh_held(replan=False)  # the first plan below includes them
        except (ConnectionError, OSError, TimeoutError) as exc:
            # Redis unreachable: keep the held set we had; the held loop tries again.
            self.log.error(
                "could not read positions at connect: %r", exc,
                extra={"event.action": "held_options_failed"},
            )  # fmt: skip
        if self.md.spot is not None and self.md.centre is None:
            await self._recentre(self.md.spot)

    def _on_disconnected(self) -> None:
        self.md.disconnected()
        self._update_status()
        self._spawn(self.publish_health())

    async def _gateway_clock_loop(self) -> None:
        while True:
            await asyncio.sleep(GATEWAY_CLOCK_REFRESH_S)
            if self.md.ib is None or not self.md.connected or self._setting_up:
                continue  # on_connected takes the first sample itself
            try:
                async with asyncio.timeout(self.settings.ib.connect_timeout_s):
                    await self.md.sample_gateway_clock(self.md.ib)
            except (ConnectionError, OSError, TimeoutError) as exc:
                self.log.warning(
                    "gateway clock not sampled: %r", exc,
                    extra={"event.action": "gateway_clock_failed"},
                )  # fmt: skip

    # held options -------------------------------------------------------------------------

    async def _held_loop(self) -> None:
        """Re-read the book's option positions every `held_refresh_s` while connected."""
        while True:
            await asyncio.sleep(self.held_refresh_s)
            if not self.md.connected or self._setting_up:
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
        if not await self.md.roll_chain():
            return
        spot = self.md.window_spot if self.md.window_spot is not None else self.md.spot
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
        if self.md.ib is not None and self.md.connected:
            known = {
                c.conId: c for calls in self.md.chain.calls.values() for c in calls.values()
            }  # fmt: skip
            for con_id in sorted(held - set(self._held_contracts)):
                contract = known.get(con_id) or await self._qualify_held(con_id)
                if contract is not None and con_id in self.held:
                    self._held_contracts[con_id] = contract
        changed = frozenset(self._held_contracts) != self.md.held_planned
        if replan and changed and self.md.connected and self.md.window_spot is not None:
            await self._recentre(self.md.window_spot)
        elif self.md.window_spot is not None:
            self._note_unquoted()

    async def _qualify_held(self, con_id: int) -> Any | None:
        """The option Contract IB knows by this conId (SMART routed), or None (logged once)."""
        contract, problem = await qualify_by_con_id(self.md.ib, self.lib, con_id)
        if contract is None:
            if con_id not in self._held_logged:
                self._held_logged.add(con_id)
                self.log.error(
                    "held option %s cannot be quoted: %s", con_id, problem,
                    extra={"event.action": "held_option_unknown", "instrument.name": str(con_id)},
                )  # fmt: skip
            return None
        self._held_logged.discard(con_id)
        self.log.info(
            "held option %s (%s) qualified by conId", con_id, contract.localSymbol,
            extra={"event.action": "held_option_qualified", "instrument.name": str(con_id)},
        )  # fmt: skip
        return contract

    def _note_unquoted(self) -> None:
        """Log (on change) and count the held options that have no line: unknown to IB or
        beyond the line budget; risk will see their marks go stale."""
        unquoted = tuple(sorted(c for c in self.held if c not in self.md.lines))
        if unquoted != self.held_unquoted and unquoted:
            self.log.warning(
                "held options without a market data line (stale marks): %s", list(unquoted),
                extra={"event.action": "held_options_unquoted"},
            )  # fmt: skip
        self.held_unquoted = unquoted
        HELD_UNQUOTED.set(len(unquoted))
        HELD_LINES.set(len(self.md.held_lines))

    # the option lines ---------------------------------------------------------------------

    async def _recentre(self, spot: float) -> None:
        """Subscribe the calls around spot for each selected expiry; drop those that left;
        publish the chain and forget the dropped calls' index and health entries."""
        done = self.md.recentre(spot, self._held_contracts)
        if done is None:
            return
        # Queued before the next await, so the first live entries are held for the backfill.
        self._queue_backfill([str(c) for c in done.added])
        gone = self._options_published - done.wanted
        for con_id in gone:
            self.health.forget(str(con_id))
        self._options_published = set(done.wanted)
        # In order after every tick already sent (the dropped calls' lines are cancelled: no
        # later tick puts one back into the index).
        batch = Batch()
        batch.hdel(Keys.OPTION_INDEX, *(str(c) for c in gone))
        batch.hdel(Keys.HEALTH, *(str(c) for c in gone))
        batch.set_latest(Keys.CHAIN, encode(done.chain))
        self.sender.send(batch)
        self._note_unquoted()
        self._update_status()
        self.log.info(
            "calls centred on strike %s (TLT %.2f): %d added, %d dropped, %d lines (%d held"
            " outside the window)",
            self.md.centre, spot, len(done.added), len(gone), len(self.md.lines),
            len(done.held_only),
            extra={"event.action": "options_recentred"},
        )  # fmt: skip

    def _maybe_recentre(self, spot: float) -> None:
        self.md.spot = spot
        if self._recentring or not self.md.may_recentre(spot):
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
        await stop_tasks(list(self._tasks))

    # ticks --------------------------------------------------------------------------------

    def _on_tickers(self, tickers: Iterable[Any]) -> None:
        """pendingTickersEvent: translate each updated ticker and write them in one batch. It
        runs inside the client's socket callback: the batch is written to Redis at once
        (`Sender`), the writer task awaits Redis's answer."""
        now = self.clock()
        batch = Batch()
        latest: dict[str, bytes] = {}  # key -> newest value: one MSET
        index: dict[str, bytes] = {}  # con_id -> newest option: one HSET
        stamps: list[float] = []
        published: list[Line] = []
        lines = self.md.lines
        ts_exchange = self.md.exchange_time(tickers, now)
        for ticker in tickers:
            contract = ticker.contract
            line = lines.get(contract.conId) if contract is not None else None
            if line is None:
                continue
            name = line.name
            n_ticks = len(ticker.ticks) or 1
            self.ticks_received += n_ticks
            line.ticks_metric.inc(n_ticks)
            ts_recv = receive_time(ticker, now)
            try:
                msg = self.md.quote(ticker, line, ts_recv, ts_exchange)
            except BadTick as bad:
                self._drop(name, bad)
                if self.health.bad_tick(name, bad.reason.value):
                    self._spawn(self.publish_health())  # flagged now, not at the next round
                continue
            data = encode(msg)
            # Every good tick is published; the latest-value keys only need the newest.
            if line.option is None:
                latest[Keys.quote(name)] = data
                batch.publish(Channels.QUOTES, data)
            else:
                latest[Keys.option(contract.conId)] = data
                index[name] = data
                batch.publish(Channels.OPTIONS, data)
            if self.conflator.due(name, ts_recv):
                held = self._history_held.get(name)
                if held is not None:
                    held.append((msg.ts_exchange, data))
                else:
                    batch.append(Streams.history(name), data, self.cfg.history_maxlen)
            stamps.append(ts_recv)
            published.append(line)
            self.health.good_tick(name, ts_recv)
            closed = self.episodes.good(name)
            if closed:
                self._spawn(self.publish_health())  # its flag cleared now, not at the next round
                self.log.info(
                    "%s good again after %s", name, {r.value: n for r, n in closed.items()},
                    extra={"event.action": "bad_data_recovered", "instrument.name": name},
                )  # fmt: skip
            if name == self.md.pair.etf:
                self._nav(ticker, msg.ts_exchange, ts_recv, batch, latest)
                self._dividends(name, ticker, msg.ts_exchange, batch, latest)
            elif name == self.md.pair.underlying:
                self._dividends(name, ticker, msg.ts_exchange, batch, latest)
                self._maybe_recentre((msg.bid + msg.ask) / 2.0)
        if batch.commands or latest:
            head = Batch()
            head.set_many(latest)
            head.hset_many(Keys.OPTION_INDEX, index)
            head.commands.extend(batch.commands)
            self.sender.send(head, (stamps, published))

    def _nav(
        self, ticker: Any, ts_exchange: float, ts_recv: float, batch: Batch,
        latest: dict[str, bytes],
    ) -> None:  # fmt: skip
        etf = self.md.pair.etf
        try:
            nav = nav_from_ticks(ticker.ticks, etf, ts_exchange, ts_recv)
        except BadTick as bad:
            self._drop(etf, bad)
            return
        if nav is not None:
            data = encode(nav)
            latest[Keys.nav(etf)] = data
            batch.publish(Channels.NAV, data)
            # Recorded like the quotes' history: a replay of the tape needs the NAV the
            # strategy's delta hedge used (trading.backtest.recorded).
            if self.conflator.due(f"{etf}:nav", ts_recv):
                batch.append(Streams.nav_history(etf), data, self.cfg.history_maxlen)

    def _dividends(
        self, symbol: str, ticker: Any, ts_exchange: float, batch: Batch,
        latest: dict[str, bytes],
    ) -> None:  # fmt: skip
        """Publish the distributions when IB's dividend tick changes (once a session or so)."""
        seen = getattr(ticker, "dividends", None)
        if seen is not None and seen is self._dividend_ticks.get(symbol):
            return  # the same tick as last time (the client makes an object per tick 59)
        self._dividend_ticks[symbol] = seen
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
        latest[Keys.dividends(symbol)] = data
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
        """Await Redis's answer to each batch the tick handler wrote (sending again, with
        the bus's retries, what a lost connection did not confirm), then count it."""
        async for note in self.sender.confirmed():
            if note is None:
                continue
            done = time.time()
            stamps, lines = note
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
        """Publish every instrument whose health changed (HSET md:health, XADD st:health and
        PUBLISH ch:health, in one transaction). One at a time (a bad tick publishes at once,
        beside the health loop): a flag and its clearing reach Redis in the order evaluated."""
        async with self._health_lock:
            changes = await self._evaluate_and_write_health()
        for change in changes:
            level = logging.INFO if change.status is DataStatus.OK else logging.WARNING
            self.log.log(
                level, "%s data %s %s", change.symbol, change.status.value, change.reason,
                extra={"event.action": "data_health", "instrument.name": change.symbol,
                       "event.outcome": change.status.value},
            )  # fmt: skip

    async def _evaluate_and_write_health(self) -> list[DataHealth]:
        now = self.clock()
        self.md.check_subscriptions(now)
        changes = self.health.evaluate(now)
        for name, h in self.health.instruments.items():
            STALENESS.labels(name).set(max(now - h.last_good, 0.0))
            STALE.labels(name).set(1 if h.status is DataStatus.STALE else 0)
        if not changes:
            return []
        self._update_status()  # the heartbeat agrees with md:health from the moment it is sent
        batch = Batch()
        for change in changes:
            data = encode(change)
            batch.hset_latest(Keys.HEALTH, change.symbol, data)
            batch.append(Streams.HEALTH_HISTORY, data)
            batch.publish(Channels.HEALTH, data)
        # One transaction: the history's entry id is the moment a reader of md:health saw it.
        await self.bus.execute(batch, transaction=True)
        return changes

    def on_gateway_state(self, state: GatewayState) -> None:
        """The connection's state, into the heartbeat (where the dashboard shows it)."""
        self.status["gateway"] = state.as_detail()
        self._update_status()

    def _update_status(self) -> None:
        md = self.md
        stale = self.health.stale()
        self.status.update(
            state="degraded" if stale or md.delayed or not md.connected else "ok",
            connected=md.connected,
            lines=len(md.lines),
            stale=stale[:20],
            delayed=md.delayed,
            centre_strike=md.centre,
            held_lines=len(md.held_lines),
            held_unquoted=list(self.held_unquoted[:20]),
            history_farm_down=md.history_farm_down,
            backfill_pending=len(self._backfill_queue) + (1 if self._backfilling else 0),
        )
        DELAYED.set(1 if md.delayed else 0)

    # connection policy --------------------------------------------------------------------

    def on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        """IB errorEvent handler: the lines apply ERROR_POLICY; a history farm back resumes
        the backfill; a notice that changes the health is published at once."""
        history_was_down = self.md.history_farm_down
        action = self.md.on_error(req_id, code, message, contract)
        if action is ErrorAction.HISTORY_FARM_OK and history_was_down:
            self._kick_backfill()
        self._update_status()
        if action not in QUIET_ACTIONS:
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
        while self._backfill_queue and self.md.connected and not self.md.history_farm_down:
            name = self._backfill_queue[0]
            line = self.md.line_named(name)
            if line is None:  # unsubscribed meanwhile
                self._backfill_queue.pop(0)
                self._release_history(name)
                continue
            waits_for_underlying = self.md.pair.underlying in self._backfill_queue
            if line.option is not None and not self._underlying_bars and waits_for_underlying:
                self._backfill_queue.append(self._backfill_queue.pop(0))
                continue
            bars = await self.md.history_bars(line.contract)
            if bars is None:
                self._backfill_queue.append(self._backfill_queue.pop(0))
                await asyncio.sleep(self.cfg.backfill_retry_s)
                continue
            self._backfill_queue.pop(0)
            if name == self.md.pair.underlying:
                self._underlying_bars = dict(bars)
            await self._append_backfill(line, bars)

    async def _append_backfill(self, line: Line, bars: list[tuple[float, float]]) -> None:
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
                self.md.pair.underlying,
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
