"""The strategy service's I/O shell: moves messages between Redis and the pure
`trading.strategy.StrategyEngine` (strategy/strategy.py starts it with `run`).

Start: subscribe to the ticks first (they wait in the inbox, so nothing published during the
start is missed; those the start already applied are dropped); restore the engine's state
(`Keys.STRATEGY_STATE`); if its estimators could not be restored, warm up by replaying the
history streams (TLT, TLTW, TLTW's NAV, the chain's calls) with trading off; seed the latest
values (chain, quotes, options, NAV, distributions, health, risk status); re-append a pending
intent that never reached the intent stream. Then:

* ticks (pub/sub) go into a conflating inbox keyed by instrument and bar
  (`trading.strategy.inbox`): the engine acts on the latest tick of each instrument in each
  bar, so a burst it cannot keep up with is conflated, not queued, and every bar still closes
  on its own prices;
* risk decisions and fills are read from their streams (never conflated) with a cursor kept in
  the state;
* every bar's outputs are written in one transaction, in this order: state (with the pending
  intent; its windows grow by the bar's values, `trading.services.strategy_state`) -> intent
  stream -> spread point and signals. A crash after the state write re-appends the intent at
  start (same deterministic id); a crash before it recomputes the same bar.
* a one-second watchdog reports stale data (heartbeat "degraded") even when no tick arrives.
"""

from __future__ import annotations

import asyncio
import time

from trading.aio import stop_tasks
from trading.bus import (
    Batch,
    Bus,
    Channels,
    DataHealth,
    Dividends,
    EtfNav,
    Fill,
    Keys,
    Message,
    OptionChain,
    OptionQuote,
    OrderEvent,
    OrderIntent,
    Quote,
    RiskDecision,
    RiskStatus,
    StreamEntry,
    Streams,
    decode,
    encode,
)
from trading.observability import BAD_MESSAGES, ERRORS
from trading.seams import seam
from trading.services.shell import ServiceContext
from trading.services.strategy_state import StateWriter, read_state
from trading.strategy import RefusedMessage, StepResult, StrategyEngine
from trading.strategy import metrics as m
from trading.strategy.inbox import Inbox

SERVICE = "strategy"
POLL_S = 0.05


class StrategyService:
    """The I/O around one engine (see the module docstring)."""

    def __init__(self, ctx: ServiceContext, engine: StrategyEngine) -> None:
        self.ctx = ctx
        self.bus: Bus = ctx.bus
        self.engine = engine
        self.inbox = Inbox(engine.bar_of)
        self.chain_ts: float | None = None
        self.wake = asyncio.Event()
        self.writing = asyncio.Lock()
        """Held from taking the state to its write landing: a bar's write and a stream poll's
        run on two connections, and an older state written last would be what a restart
        restores (a bar lost from the z window: found under load)."""
        self.state_writer = StateWriter()
        self.cursors = {
            Streams.DECISIONS: "0",
            Streams.FILLS: "0",
            Streams.INTENTS: "0",
            Streams.ORDER_EVENTS: "0",
        }
        self.entry_in_stream = ""
        """The open pair's entry intent once seen in the intent stream: risk's closes of the
        pair are the STOP/FLATTEN intents that come after it (stream order, one clock)."""
        self.subscribed = asyncio.Event()
        self.stopped = False
        """Set on shutdown: the loops end at their next turn even if a library swallowed the
        task's cancellation (Python 3.11's wait_for can, when the inner call completes at the
        same moment)."""

    # start ----------------------------------------------------------------------------------

    async def start(self) -> None:
        state, windows = await read_state(self.bus)
        restored = False
        if state is not None:
            self.cursors.update(state.get("cursors", {}))
            restored = self.engine.restore(state["engine"], windows)
            self.ctx.log.info(
                "restored the %s from the saved state",
                "estimators and the position" if restored else "position only (warming up)",
                extra={
                    "event.action": "state_restored",
                    "strategy.estimators_restored": restored,
                    "strategy.bars_closed": self.engine.bars_closed,
                    "strategy.current_bar": self.engine.current_bar,
                },
            )
        chain = await self.bus.get_latest(Keys.CHAIN, OptionChain)
        if chain is not None:
            self.apply(chain)
            self.chain_ts = chain.ts
        if not restored:
            await self.warm_up(chain)
        await self.seed_latest()
        await self.resend_pending()
        await self.poll_streams()

    async def warm_up(self, chain: OptionChain | None) -> None:
        """Replay the history streams through the engine in time order, trading off.

        The streams are read up to one moment (`Bus.stream_cut`), taken after the subscription
        started: what is past it arrives through the inbox. Read one after the other to their
        ends, a stream read later holds ticks a stream read earlier does not, and when a bar
        boundary fell between two reads the warm-up closed the open bar on the later stream's
        next-bar ticks without the earlier stream's last ticks of it (those came through the
        inbox after the bar had closed). That bar's spread then differed from a replay of the
        same ticks, and it stayed in the z window (seen in the parity test under load)."""
        underlying, etf = self.engine.config.underlying, self.engine.config.etf
        streams = [Streams.history(underlying), Streams.history(etf), Streams.nav_history(etf)]
        if chain is not None:
            streams += [Streams.history(str(o.con_id)) for o in chain.subscribed]
        cut = await self.bus.stream_cut()
        history: list[Message] = []
        for stream in streams:
            entries: list[StreamEntry[Message]] = await self.bus.read_all(stream, cut)
            history += [e.message for e in entries]
        history.sort(key=lambda msg: getattr(msg, "ts_exchange", 0.0))
        self.engine.warming_up = True
        try:
            for msg in history:
                self.apply(msg, now_wall=None)
        finally:
            self.engine.warming_up = False
        self.ctx.log.info(
            "warmed up from history",
            extra={"event.action": "warm_up", "strategy.messages": len(history)},
        )

    async def seed_latest(self) -> None:
        """The latest values from their keys. A tick of the bar the warm-up left open (or of
        an earlier one) is applied as is; a tick of a later bar goes through the inbox like a
        live one, so the open bar is closed on its own prices first (applying it here would
        close that bar on the next bar's prices: a one-bar look-ahead)."""
        bus = self.bus
        ticks: list[Quote | EtfNav | OptionQuote | None] = []
        for symbol in (self.engine.config.underlying, self.engine.config.etf):
            ticks.append(await bus.get_latest(Keys.quote(symbol), Quote))
            dividends = await bus.get_latest(Keys.dividends(symbol), Dividends)
            if dividends is not None:
                self.apply(dividends, now_wall=None, step=False)
        ticks.append(await bus.get_latest(Keys.nav(self.engine.config.etf), EtfNav))
        ticks += (await bus.hget_all(Keys.OPTION_INDEX, OptionQuote)).values()
        open_bar = self.engine.current_bar
        for msg in ticks:
            if msg is None:
                continue
            if open_bar is not None and self.engine.bar_of(msg.ts_exchange) > open_bar:
                self.inbox.put(msg, time.perf_counter())
                self.wake.set()
            else:
                self.apply(msg, now_wall=None, step=False)
        for health in (await bus.hget_all(Keys.HEALTH, DataHealth)).values():
            self.apply(health)
        status = await bus.get_latest(Keys.RISK_STATUS, RiskStatus)
        if status is not None:
            self.apply(status)

    async def resend_pending(self) -> None:
        """A pending intent saved in the state but not in the intent stream is appended again."""
        pending = self.engine.pairs.pending
        if pending is None:
            return
        recent = await self.bus.read_range(Streams.INTENTS, 1000, OrderIntent)
        if any(e.message.intent_id == pending.intent_id for e in recent):
            return
        await self.bus.append(Streams.INTENTS, pending)
        self.ctx.log.warning(
            "re-appended a pending intent after restart",
            extra={"event.action": "intent_resent", "order.ref": pending.intent_id},
        )

    # the loop -------------------------------------------------------------------------------

    def apply(self, msg: Message, now_wall: float | None = None, step: bool = True) -> StepResult:
        """Feed one message to the engine; a bad one is dropped, counted and logged (the bar
        it closed before it was refused stands: its outputs are returned)."""
        self.inbox.applied(msg)
        try:
            if step:
                result = self.engine.on_message(msg, now_wall)
            else:  # seeding latest values must not close a bar on an old timestamp
                self.engine.update(msg)
                result = StepResult()
        except ValueError as exc:
            BAD_MESSAGES.labels(SERVICE, msg.KIND, type(exc).__name__).inc()
            self.ctx.log.warning(
                "message dropped: %s",
                exc,
                extra={"event.action": "message_dropped", "event.reason": str(exc)},
            )
            return exc.closed if isinstance(exc, RefusedMessage) else StepResult()
        m.MESSAGES.labels(msg.KIND).inc()
        return result

    async def listen(self) -> None:
        channels = (Channels.QUOTES, Channels.OPTIONS, Channels.NAV, Channels.HEALTH, Channels.BOOK)
        count = 0
        async for _channel, msg in self.bus.subscribe(*channels, subscribed=self.subscribed):
            if self.stopped:
                return
            if isinstance(msg, Quote | OptionQuote | EtfNav | DataHealth | RiskStatus):
                if self.inbox.put(msg, time.perf_counter()):
                    m.CONFLATED.inc()
                self.wake.set()
                count += 1
                # The processor runs at once on a tick that closes a bar (the rest of its burst
                # can wait: it belongs to the next bar), and at least every 32 messages.
                if self.inbox.opens_bar(msg) or count % 32 == 0:
                    await asyncio.sleep(0)

    async def process(self) -> None:
        while not self.stopped:
            await self.wake.wait()
            self.wake.clear()
            for msg, arrived in self.inbox.take():
                if self.inbox.already_applied(msg):
                    continue
                result = self.apply(msg, now_wall=time.time())
                if result.bar_end_ts is not None:
                    await self.publish(result, arrived)

    async def publish(self, result: StepResult, arrived: float | None) -> None:
        """Write one bar's outputs in one round trip; ``arrived`` is when the tick that closed
        the bar came in. Redis runs a pipeline in order: the state (with the pending intent)
        lands before the intent, so a crash between them re-appends it at start."""
        async with self.writing:
            await self._publish_bar(result)
        if result.intents:
            await seam("strategy.intent_appended")
        self._observe(result, arrived)

    async def _publish_bar(self, result: StepResult) -> None:
        batch = Batch()
        for intent in result.intents:
            data = encode(intent)
            batch.append(Streams.INTENTS, data)
            batch.hset_latest(Keys.PENDING_INTENTS, intent.intent_id, data)
        point = result.spread_point
        if point is not None:
            data = encode(point)
            batch.set_latest(Keys.SPREAD_LATEST, data)
            batch.publish(Channels.SPREAD, data)
            batch.append(Streams.SPREAD, data)
        for signal in result.signals:
            data = encode(signal)
            batch.publish(Channels.SIGNALS, data)
            batch.append(Streams.SIGNALS, data)
        await self._write_with_state(batch)

    async def _write_with_state(self, batch: Batch) -> None:
        """The state (with the pending intent) ahead of ``batch``, in one transaction."""
        started = time.perf_counter()
        self.state_writer.add(batch, self.engine, self.cursors)
        m.STATE_SAVE_SECONDS.observe(time.perf_counter() - started)
        try:
            await self.bus.execute(batch, transaction=True)
        except BaseException:
            self.state_writer.failed()
            raise
        self.state_writer.written()

    def _observe(self, result: StepResult, arrived: float | None) -> None:
        point = result.spread_point
        done = time.perf_counter()
        m.BARS.labels("point" if point else "skipped").inc()
        if arrived is not None:
            m.TICK_TO_BAR_PUBLISHED_SECONDS.observe(done - arrived)
        if point is not None:
            m.ZSCORE.set(point.z)
            m.BETA.set(point.beta)
        for signal in result.signals:
            m.SIGNALS.labels(signal.action.value).inc()
        for intent in result.intents:
            m.INTENTS.labels(intent.purpose.value).inc()
            if arrived is not None:
                m.TICK_TO_INTENT_SECONDS.observe(done - arrived)
            self.ctx.log.info(
                "order intent",
                extra={
                    "event.action": "intent_emitted",
                    "order.ref": intent.intent_id,
                    "strategy.action": intent.action.value,
                    "strategy.z": intent.why.get("z"),
                },
            )

    async def save_state(self) -> None:
        async with self.writing:
            await self._write_with_state(Batch())

    async def poll_streams(self) -> None:
        """Apply new risk decisions, fills, order events and risk's own closing intents (in
        stream order, never conflated); and the pending intent's decision from its record when
        risk wrote no stream entry for it (a repeated rejection, counted instead)."""
        changed = False
        kinds = (
            (Streams.DECISIONS, RiskDecision),
            (Streams.FILLS, Fill),
            (Streams.ORDER_EVENTS, OrderEvent),
            (Streams.INTENTS, None),
        )
        reads = [(stream, self.cursors[stream], kind) for stream, kind in kinds]
        for (stream, _, _), entries in zip(
            reads, await self.bus.read_after_many(reads, 1000), strict=True
        ):
            for entry in entries:
                self.cursors[stream] = entry.entry_id
                changed |= await self.take(entry.message)
        pending = self.engine.pairs.pending
        if pending is not None:
            record = await self.bus.hget_state(Keys.INTENT_STATUS, pending.intent_id)
            if record is not None and record.get("decision"):
                changed |= await self.take(decode(record["decision"], RiskDecision))
        if changed:
            await self.save_state()

    async def take(self, msg: Message) -> bool:
        """One message from risk; True when it changed the engine's state."""
        pending = self.engine.pairs.pending
        working = self.engine.pairs.working
        if isinstance(msg, RiskDecision):
            signals = self.engine.on_decision(msg)
            if pending is not None and self.engine.pairs.pending is None:
                m.DECISIONS.labels(str(msg.approved).lower()).inc()
        elif isinstance(msg, OrderEvent):
            signals = self.engine.on_order_event(msg)
        elif isinstance(msg, OrderIntent):
            signals = self.risk_closes(msg)
        else:
            self.apply(msg)
            return False
        decided = pending is not None and self.engine.pairs.pending is None
        if pending is not None and decided:
            await self.bus.hdel(Keys.PENDING_INTENTS, pending.intent_id)
        for signal in signals:
            await self.bus.append(Streams.SIGNALS, signal)
        ours = (
            isinstance(msg, OrderEvent)
            and working is not None
            and msg.intent_id == working.intent_id
        )
        return bool(signals) or decided or ours

    def risk_closes(self, intent: OrderIntent) -> tuple:
        pair = self.engine.pairs.pair
        if pair is None:
            return ()
        if intent.intent_id == pair.entry_intent_id:
            self.entry_in_stream = intent.intent_id
            return ()
        if self.entry_in_stream != pair.entry_intent_id:
            return ()  # an intent from before this pair was entered
        signals = self.engine.on_risk_intent(intent)
        if signals:
            self.ctx.log.warning(
                "risk closed the pair: %s", signals[0].reason,
                extra={"event.action": "pair_closed_by_risk", "order.ref": intent.intent_id},
            )  # fmt: skip
        return signals

    async def poll_forever(self) -> None:
        while not self.stopped:
            await asyncio.sleep(POLL_S)
            await self.poll_streams()

    async def refresh_keys(self) -> None:
        """The chain (re-centred by data-ingestion) and distributions live in keys only."""
        chain = await self.bus.get_latest(Keys.CHAIN, OptionChain)
        if chain is not None and chain.ts != self.chain_ts:
            self.chain_ts = chain.ts
            self.apply(chain)
        for symbol in (self.engine.config.underlying, self.engine.config.etf):
            dividends = await self.bus.get_latest(Keys.dividends(symbol), Dividends)
            if dividends is not None:
                self.apply(dividends, step=False)

    async def watchdog(self) -> None:
        stale_after = self.engine.config.stale_after_s
        while not self.stopped:
            await self.refresh_keys()
            problems = self.engine.market.problems(time.time(), stale_after)
            m.DATA_STALE.set(1 if problems else 0)
            self.ctx.status.update(self.engine.status())
            self.ctx.status["state"] = "degraded" if problems else "ok"
            self.ctx.status["data_problems"] = problems
            await asyncio.sleep(1.0)


async def run(ctx: ServiceContext) -> None:
    """The service loop: subscribe, start, then process ticks, poll the streams and watch the
    data until cancelled (or a loop fails)."""
    engine = StrategyEngine.from_settings(ctx.settings)
    service = StrategyService(ctx, engine)
    # Subscribe before reading the history, so nothing published in between is missed; the
    # ticks that arrive meanwhile wait in the inbox until the warm-up is done.
    tasks = [asyncio.create_task(service.listen())]
    try:
        subscribed = asyncio.create_task(service.subscribed.wait())
        await asyncio.wait([subscribed, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
        if tasks[0].done():
            subscribed.cancel()
            tasks[0].result()  # raises what ended the subscription
            raise RuntimeError("the subscription ended before it started")
        await service.start()
    except BaseException:
        await stop_tasks(tasks, grace_s=3.0)
        raise
    ctx.status.update(engine.status())
    ctx.status["state"] = "ok"
    tasks += [
        asyncio.create_task(coro)
        for coro in (service.process(), service.poll_forever(), service.watchdog())
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                ERRORS.labels(SERVICE, type(task.exception()).__name__).inc()
                raise task.exception()  # type: ignore[misc]
    finally:
        service.stopped = True
        service.wake.set()
        await stop_tasks(tasks, grace_s=3.0)
