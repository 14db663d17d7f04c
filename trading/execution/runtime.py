"""The risk service's I/O shell: Redis and IB around the pure `ExecutionEngine`.

`RiskRuntime(ctx).run()` is the service loop (risk-management/risk_management.py calls it):

1. restore: the engine state (`Keys.RISK_STATE`), the book by replaying `Streams.FILLS`, the
   intents in flight (`Keys.INTENT_STATUS`), the marks (latest-value keys);
2. connect to IB and reconcile before anything else: open and completed orders, executions
   (fills missed while down are booked and appended), positions;
3. consume `Streams.COMMANDS` and `Streams.INTENTS` in the consumer group `Groups.RISK`:
   decide, record the decision and the order ids in `Keys.INTENT_STATUS` (status "placing")
   BEFORE placeOrder, place, record "placed", append the decision, then acknowledge;
4. every `tick_s`: stops, legging, daily loss (the engine), then status, P&L and positions,
   written in one MULTI/EXEC so a reader never sees positions of one moment with the P&L or
   the other positions of another;
5. positions: IB is the source of truth. At every (re)connect and on every tick while no order
   is working, the book's net quantities are compared with IB's positions (reqPositions); a
   difference that stays the same for `POSITION_CONFIRM_S` (so a fill whose commission report
   is still on its way is not mistaken for one) is booked as adjustment fills (appended to
   `Streams.FILLS` like any fill, so a replay reproduces them) and raised as a CRITICAL alert.

Restart safety: an intent still pending in the group is re-read; if its status is "placed" or
"rejected" it is only acknowledged; if "placing", each leg IB already knows by orderRef (and
contract) is adopted, never placed again, and only the legs IB has never seen are sent.
Intents the engine makes itself (flatten, stop, unwind) are appended to `Streams.INTENTS` and
go through the same path, so they are durable and audited like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter

from trading.broker.connection import IBConnection
from trading.broker.execution import (
    ORDER_REJECT_CODES,
    ExecutionClient,
    StatusUpdate,
    leg_index_for,
)
from trading.broker.orders import orders_for_intent
from trading.bus import (
    Batch,
    Channels,
    DataHealth,
    Dividends,
    Fill,
    Groups,
    Keys,
    OperatorCommand,
    OptionQuote,
    OrderEvent,
    OrderIntent,
    Quote,
    SpreadPoint,
    Streams,
    decode,
    encode,
)
from trading.execution.book import BrokerPosition
from trading.execution.engine import Cancel, CancelAll, ExecutionEngine, Raise, Submit
from trading.execution.tracking import LegState, TrackedLeg
from trading.observability import BAD_MESSAGES, histogram
from trading.service import ServiceContext

INTENT_TO_ORDER = histogram(
    "trading_risk_intent_to_order_seconds",
    "From an intent read off the stream to its last order handed to the IB socket",
)
DECISIONS_TOTAL = Counter("trading_risk_decisions_total", "Risk decisions", ["approved"])

PLACING, PLACED, REJECTED = "placing", "placed", "rejected"
DISTRIBUTION_SYMBOLS = ("TLT", "TLTW")
"""Whose distributions the book credits and debits (read from data-ingestion's keys)."""
POSITION_CONFIRM_S = 3.0
"""How long a difference between the book and IB's positions must stay unchanged (with no
order working) before the book is aligned to IB."""


def broker_positions(positions: list[Any], account: str = "") -> dict[int, BrokerPosition]:
    """IB positions (ib_async/ib_insync `Position`s) as `BrokerPosition`s by conId, average
    cost per share (IB's option avgCost is per contract). Raises ValueError naming the field
    when one cannot be read, so nothing is reconciled on a value that was not checked."""
    out = {}
    for p in positions:
        if account and p.account != account:
            continue
        contract = p.contract
        if not contract.conId:
            raise ValueError(f"position {contract.localSymbol!r}: conId must be set, got 0")
        if contract.secType == "OPT":
            try:
                multiplier = float(contract.multiplier or 100)
            except ValueError:
                raise ValueError(
                    f"position {contract.conId}: multiplier must be a number, "
                    f"got {contract.multiplier!r}"
                ) from None
        else:
            multiplier = 1.0
        if not p.position:
            continue
        out[contract.conId] = BrokerPosition(
            contract.conId,
            contract.symbol,
            contract.localSymbol or contract.symbol,
            contract.secType,
            multiplier,
            float(p.position),
            float(p.avgCost) / multiplier,
        )
    return out


class RiskRuntime:
    def __init__(self, ctx: ServiceContext, tick_s: float = 0.25, consumer: str = "risk-1"):
        self.ctx = ctx
        self.bus = ctx.bus
        self.log = ctx.log
        s = ctx.settings
        self.engine = ExecutionEngine(s.risk, stop_z=s.strategy.stop_z)
        self.conn = IBConnection(s.ib, s.ib_client_id("risk-management"), "risk-management")
        self.client = ExecutionClient(self.conn.ib, self.conn.library, s.ib.account)
        self.tick_s = tick_s
        self.consumer = consumer
        self.ready = asyncio.Event()
        self.writes: asyncio.Queue = asyncio.Queue()
        self.status: dict[str, dict[str, Any]] = {}  # intent_id -> INTENT_STATUS record
        self.after_place: Callable[[OrderIntent], Awaitable[None]] | None = None
        """Called between placeOrder and recording "placed": the seam crash tests kill at."""
        self.position_break: tuple[float, dict[int, tuple[float, float]]] | None = None
        """(first seen, differences) of the book against IB's positions, awaiting confirmation."""

    # start-up -------------------------------------------------------------------------------

    async def restore(self) -> None:
        self.engine.restore(await self.bus.get_state(Keys.RISK_STATE))
        after = "0"
        while True:
            entries = await self.bus.read_after(Streams.FILLS, after, count=5000, expect=Fill)
            if not entries:
                break
            for entry in entries:
                self.engine.on_fill(entry.message)
            after = entries[-1].entry_id
        # Every distribution announced, so the book rebuilt from the fills books each once.
        for symbol in DISTRIBUTION_SYMBOLS:
            for entry in await self.bus.read_after(
                Streams.dividends_history(symbol), "0", count=10_000, expect=Dividends
            ):
                self._market(entry.message)
        self.status = await self.bus.hget_all_states(Keys.INTENT_STATUS)
        now = time.time()
        for intent_id, rec in self.status.items():
            if rec.get("status") != PLACING and all(
                LegState(leg["state"]) in (LegState.FILLED, LegState.CANCELLED, LegState.REJECTED)
                for leg in rec.get("legs", [])
            ):
                continue
            intent = decode(rec["intent"], OrderIntent)
            self.engine.book.attribute(intent_id, intent.pair_id)
            self.engine.tracker.register(intent, now)
            for leg_state in rec.get("legs", []):
                leg = TrackedLeg.from_state(leg_state)
                self.engine.tracker.legs[(intent_id, leg.leg_index)] = leg
                if leg.order_id:
                    self.engine.tracker.by_order_id[leg.order_id] = leg
        await self._load_marks()

    async def _load_marks(self) -> None:
        for symbol in ("TLT", "TLTW"):
            quote = await self.bus.get_latest(Keys.quote(symbol), Quote)
            if quote is not None:
                self._market(quote)
        for msg in (await self.bus.hget_all(Keys.OPTION_INDEX, OptionQuote)).values():
            self._market(msg)
        for msg in (await self.bus.hget_all(Keys.HEALTH, DataHealth)).values():
            self._market(msg)
        spread = await self.bus.get_latest(Keys.SPREAD_LATEST, SpreadPoint)
        if spread is not None:
            self._market(spread)

    def _market(self, msg: Any) -> None:
        try:
            self.engine.on_market(msg)
        except ValueError as exc:
            BAD_MESSAGES.labels(self.ctx.name, type(msg).__name__, "invalid").inc()
            self.log.warning(
                "market message refused: %s", exc, extra={"event.action": "bad_market_data"}
            )

    async def on_connected(self, ib: Any) -> None:
        """After each (re)connect: reconcile with IB, then let the loop place orders."""
        self.ready.clear()
        self.client.attach()
        snap = await self.client.reconcile()
        now = time.time()
        for fill in snap.fills:
            self._fill_from_ib(fill)
        for ref, trades in snap.trades_by_ref.items():
            rec = self.status.get(ref)
            if rec is None:
                continue
            intent = decode(rec["intent"], OrderIntent)
            for trade in trades:
                index = leg_index_for(intent.legs, trade.contract)
                leg = self.engine.tracker.leg(ref, index) if index is not None else None
                if leg is None:
                    continue
                if trade.order.orderId and leg.order_id != trade.order.orderId:
                    self.engine.tracker.assign_order_id(ref, index, trade.order.orderId, now)
                leg.perm_id = trade.order.permId or leg.perm_id
                leg.message = leg.message or "reconciled with IB"
                self._status(self.client_status(trade), trade)
                if leg.state is LegState.PLACING:
                    leg.state = LegState.WORKING
        # A leg recorded as placing that IB has never seen was not sent (the process died
        # between recording and placeOrder): forget its order id so it is sent once, now.
        for intent_id, rec in self.status.items():
            if rec.get("status") != PLACING:
                continue
            for leg in self.engine.tracker.legs_of(intent_id):
                if leg.state is LegState.PLACING and leg.order_id:
                    self.engine.tracker.by_order_id.pop(leg.order_id, None)
                    leg.order_id = 0
        self.position_break = None
        await self.check_positions(now)
        self.ready.set()
        self.log.info(
            "reconciled with IB: %d order refs, %d executions, %d positions",
            len(snap.trades_by_ref),
            len(snap.fills),
            len(snap.positions),
            extra={"event.action": "ib_reconciled"},
        )

    @staticmethod
    def client_status(trade: Any) -> StatusUpdate:
        from trading.broker.execution import status_update

        return status_update(trade)

    # IB events (synchronous, inside the client's reader) --------------------------------------

    def _status(self, update: StatusUpdate, trade: Any = None) -> None:
        event = self.engine.on_status(
            update.order_id,
            update.status,
            update.filled,
            update.remaining,
            update.avg_fill_price,
            time.time(),
            update.perm_id,
            update.message,
        )
        if event is not None:
            self.writes.put_nowait(("event", event))

    def _fill(self, fill: Fill) -> None:
        if self.engine.on_fill(fill):
            self.writes.put_nowait(("fill", fill))

    def _fill_from_ib(self, ib_fill: Any) -> None:
        from trading.broker.execution import fill_message

        ts = ib_fill.time.timestamp() if hasattr(ib_fill.time, "timestamp") else time.time()
        try:
            fill = fill_message(
                ib_fill.contract, ib_fill.execution, ib_fill.commissionReport.commission, ts
            )
        except ValueError as exc:
            self.log.error("execution refused: %s", exc, extra={"event.action": "bad_fill"})
            return
        self._fill(fill)

    def _error(self, order_id: int, code: int, message: str) -> None:
        if code not in ORDER_REJECT_CODES:
            return
        event = self.engine.on_reject(order_id, code, message, time.time())
        if event is not None:
            self.writes.put_nowait(("event", event))
            self.writes.put_nowait(("reject", event))

    # intents --------------------------------------------------------------------------------

    async def handle_intent(self, intent: OrderIntent, t0: float) -> bool:
        """Decide and place; True when the intent may be acknowledged."""
        rec = self.status.get(intent.intent_id)
        if rec is not None and rec.get("status") in (PLACED, REJECTED):
            return True
        now = time.time()
        decision = self.engine.decide(intent, now)
        DECISIONS_TOTAL.labels(str(decision.approved).lower()).inc()
        if not decision.approved:
            rec = {
                "status": REJECTED,
                "intent": encode(intent).decode(),
                "decision": encode(decision).decode(),
                "legs": [],
            }
            await self.bus.hset_state(Keys.INTENT_STATUS, intent.intent_id, rec)
            self.status[intent.intent_id] = rec
            await self.bus.append(Streams.DECISIONS, decision)
            self.log.info(
                "intent rejected: %s",
                "; ".join(r.code for r in decision.reasons),
                extra={"event.action": "intent_rejected", "order.ref": intent.intent_id},
            )
            return True
        if not self.ready.is_set():
            return False
        legs = self.engine.tracker.legs_of(intent.intent_id)
        to_send = []
        for leg_order in orders_for_intent(intent, self.client.account, self.conn.library):
            tracked = self.engine.tracker.leg(intent.intent_id, leg_order.leg_index)
            if tracked is None or tracked.order_id or tracked.done:
                continue  # already sent (or adopted from IB at reconciliation)
            try:
                order_id = self.client.next_order_id()
            except ConnectionError:
                return False
            self.engine.order_sent(intent.intent_id, leg_order.leg_index, order_id, now)
            to_send.append((leg_order, order_id))
        rec = {
            "status": PLACING,
            "intent": encode(intent).decode(),
            "decision": encode(decision).decode(),
            "legs": [t.to_state() for t in legs],
        }
        await self.bus.hset_state(Keys.INTENT_STATUS, intent.intent_id, rec)
        self.status[intent.intent_id] = rec
        for leg_order, order_id in to_send:
            self.client.place(leg_order, order_id)
        INTENT_TO_ORDER.observe(time.perf_counter() - t0)
        if self.after_place is not None:
            await self.after_place(intent)
        rec = dict(rec, status=PLACED)
        await self.bus.hset_state(Keys.INTENT_STATUS, intent.intent_id, rec)
        self.status[intent.intent_id] = rec
        await self.bus.append(Streams.DECISIONS, decision)
        self.log.info(
            "intent placed: %d orders",
            len(to_send),
            extra={"event.action": "intent_placed", "order.ref": intent.intent_id},
        )
        return True

    async def handle_command(self, cmd: OperatorCommand) -> None:
        now = time.time()
        await self.execute(self.engine.on_command(cmd, now))
        await self.publish_book(now)  # the new trading state is visible at once

    async def execute(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, CancelAll):
                if self.conn.ib.isConnected():
                    self.client.cancel_all()
            elif isinstance(action, Cancel):
                for order_id in action.order_ids:
                    if self.conn.ib.isConnected():
                        self.client.cancel(order_id)
            elif isinstance(action, Submit):
                await self.bus.append(Streams.INTENTS, action.intent)
            elif isinstance(action, Raise):
                await self.bus.append(Streams.ALERTS, action.alert)
                await self.bus.publish(Channels.ALERTS, action.alert)

    # loops ----------------------------------------------------------------------------------

    async def writer(self) -> None:
        while True:
            kind, msg = await self.writes.get()
            if kind == "event":
                await self._write_event(msg)
            elif kind == "fill":
                await self.bus.append(Streams.FILLS, msg)
                await self.bus.publish(Channels.BOOK, msg)
            elif kind == "reject":
                from trading.bus import Alert, Severity

                await self.bus.append(
                    Streams.ALERTS,
                    Alert(
                        msg.ts,
                        Severity.WARNING,
                        self.ctx.name,
                        "order_rejected",
                        f"order {msg.order_id} of {msg.intent_id} rejected: {msg.message}",
                        {"intent": msg.intent_id},
                    ),
                )

    async def _write_event(self, event: OrderEvent) -> None:
        await self.bus.append(Streams.ORDER_EVENTS, event)
        legs = self.engine.tracker.legs_of(event.intent_id)
        member = f"{event.intent_id}/{event.order_id}"
        if event.status in ("Filled", "Cancelled", "ApiCancelled", "Inactive", "Rejected"):
            await self.bus.hdel(Keys.OPEN_ORDERS, member)
        else:
            await self.bus.hset_latest(Keys.OPEN_ORDERS, member, event)
        rec = self.status.get(event.intent_id)
        if rec is not None:
            rec = dict(rec, legs=[t.to_state() for t in legs])
            self.status[event.intent_id] = rec
            await self.bus.hset_state(Keys.INTENT_STATUS, event.intent_id, rec)
        await self.bus.publish(Channels.BOOK, event)

    async def market_feed(self) -> None:
        async for _channel, msg in self.bus.subscribe(
            Channels.QUOTES, Channels.OPTIONS, Channels.HEALTH, Channels.SPREAD
        ):
            if isinstance(msg, Quote | OptionQuote | DataHealth | SpreadPoint):
                self._market(msg)

    def _unsolicited_fills(self) -> None:
        """Book executions no order of ours produced (IB reports an assignment or an expiry
        with order id 0 and no orderRef; ib_async stores them but emits no event)."""
        seen = self.engine.book.seen_exec_ids
        for ib_fill in self.conn.ib.fills():
            execution = ib_fill.execution
            if not execution.orderRef and execution.execId not in seen:
                self._fill_from_ib(ib_fill)

    async def check_positions(self, now: float) -> None:
        """Compare the book with IB's positions; align it once a difference is confirmed."""
        ib = self.conn.ib
        if not ib.isConnected() or self.engine.tracker.open_legs() or ib.openTrades():
            self.position_break = None  # working orders move positions: compare when done
            return
        try:
            broker = broker_positions(ib.positions(), self.client.account)
        except ValueError as exc:
            self.position_break = None
            self.log.error("IB position refused: %s", exc, extra={"event.action": "bad_position"})
            return
        differences = self.engine.book.differences(broker)
        if not differences:
            self.position_break = None
            return
        if self.position_break is None or self.position_break[1] != differences:
            self.position_break = (now, differences)
            self.log.warning(
                "book differs from IB's positions (con_id: book, IB): %s",
                differences,
                extra={"event.action": "position_break"},
            )
            return
        if now - self.position_break[0] < POSITION_CONFIRM_S:
            return
        self.position_break = None
        fills, actions = self.engine.reconcile_positions(broker, now, str(int(now * 1000)))
        # the attribution of the adjustments is stored before the fills: a replay needs it
        await self.bus.set_state(Keys.RISK_STATE, self.engine.to_state())
        for fill in fills:
            self.writes.put_nowait(("fill", fill))
        await self.execute(actions)
        self.log.warning(
            "book aligned to IB's positions with %d adjustment fills",
            len(fills),
            extra={"event.action": "position_reconciled"},
        )

    async def ticker(self) -> None:
        last_book = last_dividends = 0.0
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.time()
            if self.ready.is_set() and self.conn.ib.isConnected():
                self._unsolicited_fills()
                await self.check_positions(now)
            if now - last_dividends >= 5.0:
                last_dividends = now
                for symbol in DISTRIBUTION_SYMBOLS:
                    dividends = await self.bus.get_latest(Keys.dividends(symbol), Dividends)
                    if dividends is not None:
                        self._market(dividends)
            await self.execute(self.engine.tick(now))
            if now - last_book >= 1.0 or not self.writes.empty():
                last_book = now
                await self.publish_book(now)

    async def publish_book(self, now: float) -> None:
        """Risk status, P&L and every position of one moment, in one transaction."""
        batch = Batch()
        status = encode(self.engine.risk_status(now))
        pnl = encode(self.engine.pnl(now))
        batch.hset_many(
            Keys.POSITIONS, {str(p.con_id): encode(p) for p in self.engine.positions(now)}
        )
        batch.set_latest(Keys.PNL, pnl)
        batch.set_latest(Keys.RISK_STATUS, status)
        batch.publish(Channels.BOOK, status)
        batch.publish(Channels.BOOK, pnl)
        await self.bus.execute(batch, transaction=True)
        await self.bus.set_state(Keys.RISK_STATE, self.engine.to_state())
        self.ctx.status.update(
            state="ok" if self.conn.connected else "degraded",
            trading_state=str(self.engine.state),
            ib_connected=self.conn.connected,
            open_orders=len(self.engine.tracker.open_legs()),
        )

    async def consume(self) -> None:
        bus = self.bus
        await bus.ensure_group(Streams.INTENTS, Groups.RISK)
        await bus.ensure_group(Streams.COMMANDS, Groups.RISK)
        await self.ready.wait()
        pending = True
        while True:
            # One read of both streams: an operator command and an intent each wake it at once.
            entries = await bus.read_groups(
                {Streams.COMMANDS: OperatorCommand, Streams.INTENTS: OrderIntent},
                Groups.RISK,
                self.consumer,
                count=20,
                block_ms=50,
                pending_first=pending,
            )
            commands = [e for e in entries if e.stream == Streams.COMMANDS]
            entries = [e for e in entries if e.stream == Streams.INTENTS]
            for entry in commands:
                await self.handle_command(entry.message)
                await bus.ack(Streams.COMMANDS, Groups.RISK, entry.entry_id)
            pending = False
            for entry in entries:
                t0 = time.perf_counter()
                try:
                    done = await self.handle_intent(entry.message, t0)
                except ValueError as exc:
                    self.log.error(
                        "intent refused: %s",
                        exc,
                        extra={"event.action": "bad_intent", "order.ref": entry.message.intent_id},
                    )
                    BAD_MESSAGES.labels(self.ctx.name, "intent", "invalid").inc()
                    done = True
                if done:
                    await bus.ack(Streams.INTENTS, Groups.RISK, entry.entry_id)
                else:
                    pending = True  # IB down: re-read it once reconnected
                    await self.ready.wait()

    async def run(self) -> None:
        await self.restore()
        self.client.on_status = self._status
        self.client.on_fill = self._fill
        self.client.on_error = self._error
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(self.conn.run(self.on_connected, stop)),
            asyncio.create_task(self.writer()),
            asyncio.create_task(self.market_feed()),
            asyncio.create_task(self.ticker()),
            asyncio.create_task(self.consume()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            stop.set()
            for task in tasks:
                # A cancellation can be swallowed when it races a completing wait_for inside a
                # client library (Python 3.11); keep cancelling until each task is done.
                while not task.done():
                    task.cancel()
                    await asyncio.wait({task}, timeout=0.1)
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    task.result()
