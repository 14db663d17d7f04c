"""The risk service's I/O shell: Redis and IB around the pure `ExecutionEngine`.

`RiskRuntime(ctx).run()` is the service loop (risk-management/risk_management.py calls it):

1. restore: the engine state (`Keys.RISK_STATE`), the book by replaying `Streams.FILLS`, the
   intents in flight (`Keys.INTENT_STATUS`), the marks (latest-value keys);
2. connect to IB and rebuild every order's state from IB before anything else
   (`reconcile_orders`): open and completed orders, executions (fills missed while down are
   booked and appended; a leg's fill is IB's), positions; a sent leg IB does not know is LOST;
3. consume `Streams.COMMANDS` and `Streams.INTENTS` in the consumer group `Groups.RISK`:
   decide, record the decision and the order ids in `Keys.INTENT_STATUS` (status "placing")
   BEFORE placeOrder, reading every leg's `Keys.HEALTH` in the same transaction (data flagged
   at that moment refuses the intent STALE_DATA: the flag, not the decision's view of it,
   decides), place, record "placed", append the decision, then acknowledge;
4. every `tick_s`: stops, legging, daily loss (the engine); orders IB has not acknowledged
   within `ack_timeout_s` looked up at IB; then status, P&L and positions, written in one
   MULTI/EXEC so a reader never sees positions of one moment with the P&L or the other
   positions of another; the heartbeat says "degraded", with the reasons, while risk cannot
   act (IB down or its link lost, orders unanswered, a close waiting, intents kept refused);
5. positions: IB is the source of truth. At every (re)connect and on every tick while no order
   is working, the book's net quantities are compared with IB's positions (reqPositions); a
   difference that stays the same for `POSITION_CONFIRM_S` (so a fill whose commission report
   is still on its way is not mistaken for one) is booked as adjustment fills (appended to
   `Streams.FILLS` like any fill, so a replay reproduces them) and raised as a CRITICAL alert.

Restart safety: an intent still pending in the group is re-read; if its status is "placed" or
"rejected" it is only acknowledged; if "placing", each leg IB already knows by orderRef (and
contract) is adopted, never placed again, and only the legs IB confirmed it has never seen are
sent. A leg of a "placed" intent that IB does not know after a reconnect went down with the
connection: it is LOST (alerted CRITICAL, not sent again: its prices are old by then). Between
IB's error 1100 and 1101/1102 (IB's own link to its servers down) nothing is placed.
Intents the engine makes itself (flatten, stop, unwind) are appended to `Streams.INTENTS` and
go through the same path, so they are durable and audited like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Any

from prometheus_client import Counter

from trading.broker.connection import IBConnection
from trading.broker.execution import (
    ORDER_REJECT_CODES,
    ExecutionClient,
    broker_positions,
    leg_index_for,
    status_update,
)
from trading.broker.orders import orders_for_intent
from trading.bus import (
    Alert,
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
    RiskDecision,
    RiskReason,
    Severity,
    SpreadPoint,
    Streams,
    decode,
    encode,
)
from trading.domain.orders import StatusUpdate
from trading.execution.decisions import RejectionLog
from trading.execution.engine import (
    CLOSE_WAIT_ALERT_S,
    Cancel,
    CancelAll,
    ExecutionEngine,
    Raise,
    Submit,
)
from trading.execution.gate import INVALID, data_names, flagged_at_send
from trading.execution.tracking import DONE_LEG_STATES, LegState, TrackedLeg
from trading.observability import BAD_MESSAGES, histogram
from trading.seams import seam
from trading.services.shell import ServiceContext

INTENT_TO_ORDER = histogram(
    "trading_risk_intent_to_order_seconds",
    "From an intent read off the stream to its last order handed to the IB socket",
)
DECISIONS_TOTAL = Counter("trading_risk_decisions_total", "Risk decisions", ["approved"])

PLACING, PLACED, REJECTED = "placing", "placed", "rejected"
UNANSWERED = frozenset({"PendingSubmit", "ApiPending"})
"""Statuses the client library gives an order before IB has said anything about it."""
QUERY_TIMEOUT_S = 15.0
"""How long a lookup of unacknowledged orders at IB may take before it is given up."""
POSITION_CONFIRM_S = 3.0
"""How long a difference between the book and IB's positions must stay unchanged (with no
order working) before the book is aligned to IB."""
DONE_LEGS_KEPT_S = 86_400.0
"""How long an intent whose legs are all done stays tracked (a reconnect's reconciliation
matches the day's executions and completed orders to them); then it is forgotten, so that a
decision's scans of the working legs do not grow with every intent ever placed."""
MARKET_SLICE = 4
"""Market messages handled between two turns of the event loop (an intent waits for no more)."""


class RiskRuntime:
    def __init__(self, ctx: ServiceContext, tick_s: float = 0.25, consumer: str = "risk-1"):
        self.ctx = ctx
        self.bus = ctx.bus
        self.log = ctx.log
        s = ctx.settings
        self.pair = s.pair_spec()
        self.engine = ExecutionEngine(s.risk, stop_z=s.strategy.stop_z, pair=self.pair)
        self.conn = IBConnection(s.ib, s.ib_client_id("risk-management"), "risk-management")
        self.client = ExecutionClient(self.conn.ib, self.conn.library, s.ib.account)
        self.tick_s = tick_s
        self.consumer = consumer
        self.ready = asyncio.Event()
        self.writes: asyncio.Queue = asyncio.Queue()
        self.status: dict[str, dict[str, Any]] = {}  # intent_id -> INTENT_STATUS record
        self.settings_risk = s.risk
        self.ack_timeout_s = s.risk.ack_timeout_s
        self.queried: set[tuple[str, int]] = set()
        """Legs already looked up at IB for a missing acknowledgement."""
        self.rejections = RejectionLog(s.risk.rejection_record_window_s)
        self.ib_link_lost = False
        """IB's error 1100 (its link to IB's servers is down) until 1101/1102."""
        self.background: set[asyncio.Task] = set()
        self.query_task: asyncio.Future | None = None
        self.wedge_alerted = False
        self.position_break: tuple[float, dict[int, tuple[float, float]]] | None = None
        """(first seen, differences) of the book against IB's positions, awaiting confirmation."""

    # start-up -------------------------------------------------------------------------------

    async def restore(self) -> None:
        # The exchange calendar is built once a process (about 0.5 s): here, not inside the
        # first intent's decision, which it would delay by as much.
        _ = self.engine.gate.calendar
        self.engine.restore(await self.bus.get_state(Keys.RISK_STATE))
        self.status = await self.bus.hget_all_states(Keys.INTENT_STATUS)
        intents = {i: decode(rec["intent"], OrderIntent) for i, rec in self.status.items()}
        # Every intent's pair, from its record (written before its placeOrder), before the
        # fills are replayed: the risk state saved each second may not know an intent decided
        # just before a crash, and its fills would go to no pair (its exit then refused).
        for intent_id, intent in intents.items():
            self.engine.book.attribute(intent_id, intent.pair_id)
        after = "0"
        while True:
            entries = await self.bus.read_after(Streams.FILLS, after, count=5000, expect=Fill)
            if not entries:
                break
            for entry in entries:
                self.engine.on_fill(entry.message)
            after = entries[-1].entry_id
        # Every distribution of the pair's two stocks announced, so the book rebuilt from the
        # fills books each once.
        for symbol in self.pair.stocks:
            for announced in await self.bus.read_after(
                Streams.dividends_history(symbol), "0", count=10_000, expect=Dividends
            ):
                self._market(announced.message)
        now = time.time()
        for intent_id, rec in self.status.items():
            if rec.get("status") != PLACING and all(
                LegState(leg["state"]) in DONE_LEG_STATES for leg in rec.get("legs", [])
            ):
                continue
            self.engine.tracker.register(intents[intent_id], now)
            for leg_state in rec.get("legs", []):
                leg = TrackedLeg.from_state(leg_state)
                self.engine.tracker.legs[(intent_id, leg.leg_index)] = leg
                if leg.order_id:
                    self.engine.tracker.by_order_id[leg.order_id] = leg
        await self._load_marks()

    async def _load_marks(self) -> None:
        for symbol in self.pair.stocks:
            quote = await self.bus.get_latest(Keys.quote(symbol), Quote)
            if quote is not None:
                self._market(quote)
        for msg in (await self.bus.hget_all(Keys.OPTION_INDEX, OptionQuote)).values():
            self._market(msg)
        for health in (await self.bus.hget_all(Keys.HEALTH, DataHealth)).values():
            self._market(health)
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
        """After each (re)connect: rebuild every order's state from IB, then let the loop
        place orders."""
        self.ready.clear()
        self.client.attach()
        snap = await self.reconcile_orders(after_connect=True)
        self.position_break = None
        await self.check_positions(time.time())
        self.ready.set()
        self.log.info(
            "reconciled with IB: %d order refs, %d executions, %d positions",
            len(snap.trades_by_ref),
            len(snap.fills),
            len(snap.positions),
            extra={"event.action": "ib_reconciled"},
        )

    async def reconcile_orders(
        self, after_connect: bool, legs: list[TrackedLeg] | None = None
    ) -> Any:
        """Ask IB for its open and completed orders and its executions, and make every tracked
        leg what IB says it is: executions booked (a leg's fill is their sum), statuses
        adopted by orderRef and contract (a completed order may come without its order id).

        A leg IB does not know (no order, no execution under its orderRef and contract) was
        never received. After a reconnect: a leg of an intent still "placing" (risk died
        between its record and placeOrder; the intent is still pending in the group) gets its
        order id forgotten and is sent now, once: under the approval it had when another of
        its legs is at IB already, else gated again; a leg of a "placed" intent is LOST (it
        went down with the connection). On an acknowledgement timeout (`legs` given) the unknown
        ones among `legs` are LOST (and a cancel is sent for their ids, in case).
        """
        snap = await self.client.reconcile()
        now = time.time()
        for fill in snap.fills:
            self._fill_from_ib(fill)
        touched: set[str] = {f.execution.orderRef for f in snap.fills if f.execution.orderRef}
        known: set[tuple[str, int]] = set()
        for ref, trades in snap.trades_by_ref.items():
            intent = self.engine.tracker.intents.get(ref)
            if intent is None:
                continue
            for trade in trades:
                index = leg_index_for(intent.legs, trade.contract)
                if index is None or self.engine.tracker.leg(ref, index) is None:
                    continue
                update = status_update(trade)
                if update.status in UNANSWERED and not trade.fills:
                    continue  # the client's own record of a placeOrder IB has not answered
                known.add((ref, index))
                touched.add(ref)
                event = self.engine.adopt(ref, index, update, now)
                if event is not None:
                    self.writes.put_nowait(("event", event))
        candidates = self.engine.tracker.open_legs() if legs is None else legs
        at_ib = {iid for iid, _ in known} | {
            t.intent_id for t in self.engine.tracker.open_legs() if t.executions
        }
        for intent_id, rec in self.status.items():
            if after_connect and rec.get("status") == PLACING and intent_id in at_ib:
                self.engine.resume(decode(rec["decision"], RiskDecision))
        for leg in candidates:
            key = (leg.intent_id, leg.leg_index)
            if leg.done or key in known or leg.executions or not leg.order_id:
                continue
            rec = self.status.get(leg.intent_id, {})
            if after_connect and rec.get("status") == PLACING:
                self.engine.tracker.forget_order_id(leg)  # sent now by the pending intent
                continue
            if not after_connect and leg.order_id and self.conn.ib.isConnected():
                self.client.cancel_unknown(leg.order_id)
            why = (
                "unknown to IB after the reconnect"
                if after_connect
                else f"no acknowledgement within {self.ack_timeout_s:g} s and unknown to IB"
            )
            for item in self.engine.lose(leg.intent_id, leg.leg_index, now, why):
                if isinstance(item, Raise):
                    await self.execute([item])
                else:
                    self.writes.put_nowait(("event", item))
            touched.add(leg.intent_id)
        for ref in touched:
            await self._save_legs(ref)
        return snap

    async def _save_legs(self, intent_id: str) -> None:
        rec = self.status.get(intent_id)
        if rec is None:
            return
        legs = self.engine.tracker.legs_of(intent_id)
        if not legs:
            return
        rec = dict(rec, legs=[t.to_state() for t in legs])
        self.status[intent_id] = rec
        await self.bus.hset_state(Keys.INTENT_STATUS, intent_id, rec)

    async def query_unacknowledged(self, now: float) -> None:
        """Legs IB has not answered for within ack_timeout_s: ask IB, resolve what it does
        not know as lost (each leg is queried once)."""
        late = [
            t
            for t in self.engine.tracker.unacknowledged(now, self.ack_timeout_s)
            if (t.intent_id, t.leg_index) not in self.queried
        ]
        if not late:
            return
        self.queried.update((t.intent_id, t.leg_index) for t in late)
        self.log.warning(
            "%d orders not acknowledged by IB within %.1f s: asking IB",
            len(late),
            self.ack_timeout_s,
            extra={"event.action": "order_unacknowledged"},
        )
        await self.reconcile_orders(after_connect=False, legs=late)

    def _connectivity(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        """IB's own connection to its servers (1100 lost; 1101/1102 restored): no order is
        placed while it is lost, and every order is reconciled once it is back."""
        if code == 1100:
            self.ib_link_lost = True
            self.ready.clear()
            self.log.warning(
                "IB lost its connection to its servers (1100): orders held",
                extra={"event.action": "ib_link_lost"},
            )
        elif code in (1101, 1102) and self.ib_link_lost:
            self.ib_link_lost = False
            task = asyncio.ensure_future(self._after_link_restored(code))
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    def _disconnected(self) -> None:
        """A new connection starts with IB's link state unknown (1100 is sent on a change)."""
        self.ready.clear()
        self.ib_link_lost = False

    async def _after_link_restored(self, code: int) -> None:
        self.log.info(
            "IB's connection to its servers restored (%d): reconciling", code,
            extra={"event.action": "ib_link_restored"},
        )  # fmt: skip
        try:
            await self.reconcile_orders(after_connect=True)
        except (ConnectionError, TimeoutError) as exc:
            self.log.warning("reconcile after %d failed: %s", code, exc)
            return  # the reconnect that follows reconciles again
        if self.conn.ib.isConnected() and not self.ib_link_lost:
            self.ready.set()

    # IB events (synchronous, inside the client's reader) --------------------------------------

    def _status(self, update: StatusUpdate, trade: Any = None) -> None:
        event = self.engine.on_status(update, time.time())
        if event is not None:
            self.writes.put_nowait(("event", event))

    def _fill(self, fill: Fill) -> None:
        if self.engine.on_fill(fill, time.time()):
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
        if not self.ready.is_set():
            return False  # IB (or its link to its servers) is down: decide once it is back
        now = time.time()
        decision = self.engine.decide(intent, now)
        DECISIONS_TOTAL.labels(str(decision.approved).lower()).inc()
        if not decision.approved:
            await self._record_rejection(intent, decision, now)
            return True
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
        await seam("risk.approved")
        names = data_names(intent)  # every leg's data health as of the send, not the decision:
        health = await self.bus.hset_state_reading(  # read with the "placing" record
            Keys.INTENT_STATUS, intent.intent_id, rec, Keys.HEALTH, names
        )
        self.status[intent.intent_id] = rec
        flagged = flagged_at_send(names, health)
        if flagged and len(to_send) == len(legs):  # (the rest of a pair half at IB goes on)
            refusal = RiskDecision(intent.intent_id, time.time(), False, tuple(flagged))
            self.engine.refuse_unsent(refusal)
            await self._record_rejection(intent, refusal, refusal.ts)
            return True
        await seam("risk.placing_recorded")
        for leg_order, order_id in to_send:
            try:
                self.client.place(leg_order, order_id)
            except ConnectionError:
                return False  # nothing sent on a closed socket: the reconnect decides
            self.engine.placed(intent.intent_id, leg_order.leg_index, time.time())
            await seam("risk.leg_sent")
        INTENT_TO_ORDER.observe(time.perf_counter() - t0)
        await seam("risk.order_sent")
        rec = dict(rec, status=PLACED, legs=[t.to_state() for t in legs])
        await self.bus.hset_state(Keys.INTENT_STATUS, intent.intent_id, rec)
        self.status[intent.intent_id] = rec
        await self.bus.append(Streams.DECISIONS, decision)
        self.log.info(
            "intent placed: %d orders",
            len(to_send),
            extra={"event.action": "intent_placed", "order.ref": intent.intent_id},
        )
        return True

    async def _refuse_invalid(self, intent: OrderIntent, exc: ValueError) -> None:
        """An intent that cannot be handled (a value that fails a check) is rejected INVALID,
        with the reason, so its sender learns it was not traded; never dropped silently."""
        self.log.error(
            "intent refused: %s", exc,
            extra={"event.action": "bad_intent", "order.ref": intent.intent_id},
        )  # fmt: skip
        BAD_MESSAGES.labels(self.ctx.name, "intent", "invalid").inc()
        reason = RiskReason(INVALID, f"the intent could not be handled: {exc}")
        decision = RiskDecision(intent.intent_id, time.time(), False, (reason,))
        await self._record_rejection(intent, decision, decision.ts)

    async def _record_rejection(
        self, intent: OrderIntent, decision: RiskDecision, now: float
    ) -> None:
        """Every rejection is in the intent's record; the decision stream and the log get the
        first of a run of identical ones per pair and window, with the count held back."""
        rec = {
            "status": REJECTED,
            "intent": encode(intent).decode(),
            "decision": encode(decision).decode(),
            "legs": [],
        }
        await self.bus.hset_state(Keys.INTENT_STATUS, intent.intent_id, rec)
        self.status[intent.intent_id] = rec
        for event in self.engine.abandon(intent.intent_id, now, "not sent: the intent was refused"):
            self.writes.put_nowait(("event", event))
        codes = tuple(sorted(str(r.code) for r in decision.reasons))
        write, repeats = self.rejections.admit(intent.pair_id, codes, now)
        if not write:
            return
        if repeats:
            note = RiskReason(
                "REPEATED",
                f"{repeats} more rejections of pair {intent.pair_id} for the same reasons "
                f"were held back in the last {self.settings_risk.rejection_record_window_s:g} s",
            )
            decision = replace(decision, reasons=(*decision.reasons, note))
        await self.bus.append(Streams.DECISIONS, decision)
        self.log.info(
            "intent rejected: %s%s",
            "; ".join(r.code for r in decision.reasons),
            f" ({repeats} like it held back)" if repeats else "",
            extra={"event.action": "intent_rejected", "order.ref": intent.intent_id},
        )

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
                data = encode(msg)
                batch = Batch()
                batch.append(Streams.FILLS, data)
                batch.publish(Channels.BOOK, data)
                await self.bus.execute(batch, transaction=True)
            elif kind == "reject":
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
        """An order event's records in one transaction: the event stream, the open orders, the
        intent's status with its legs, the book channel (one round trip, not four; a reader
        never sees the status ahead of the event)."""
        data = encode(event)
        batch = Batch()
        batch.append(Streams.ORDER_EVENTS, data)
        member = f"{event.intent_id}/{event.order_id}"
        if event.status in ("Filled", "Cancelled", "ApiCancelled", "Inactive", "Rejected", "Lost"):
            batch.hdel(Keys.OPEN_ORDERS, member)
        else:
            batch.hset_latest(Keys.OPEN_ORDERS, member, data)
        rec = self.status.get(event.intent_id)
        if rec is not None:
            legs = self.engine.tracker.legs_of(event.intent_id)
            rec = dict(rec, legs=[t.to_state() for t in legs])
            self.status[event.intent_id] = rec
            batch.hset_state(Keys.INTENT_STATUS, event.intent_id, rec)
        batch.publish(Channels.BOOK, data)
        await self.bus.execute(batch, transaction=True)

    async def market_feed(self) -> None:
        count = 0
        async for _channel, msg in self.bus.subscribe(
            Channels.QUOTES, Channels.OPTIONS, Channels.HEALTH, Channels.SPREAD
        ):
            if isinstance(msg, Quote | OptionQuote | DataHealth | SpreadPoint):
                self._market(msg)
            count += 1
            if count % MARKET_SLICE == 0:
                # A market step arrives as dozens of quotes read at once: an intent that
                # arrives meanwhile is decided after a few of them, not after all.
                await asyncio.sleep(0)

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
        last_book = last_dividends = last_forget = 0.0
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.time()
            if now - last_forget >= 60.0:
                last_forget = now
                self.engine.tracker.forget_done(now - DONE_LEGS_KEPT_S)
            if self.ready.is_set() and self.conn.ib.isConnected():
                self._unsolicited_fills()
                await self.check_positions(now)
                self._query_in_background(now)
            if now - last_dividends >= 5.0:
                last_dividends = now
                for symbol in self.pair.stocks:
                    dividends = await self.bus.get_latest(Keys.dividends(symbol), Dividends)
                    if dividends is not None:
                        self._market(dividends)
            await self.execute(self.engine.tick(now))
            if now - last_book >= 1.0 or not self.writes.empty():
                last_book = now
                await self.publish_book(now)

    def _query_in_background(self, now: float) -> None:
        """Look unacknowledged orders up at IB without holding up the stop rules: one query at
        a time, bounded (a socket that stopped answering is a reconnect's job)."""
        if self.query_task is not None and not self.query_task.done():
            return
        if not self.engine.tracker.unacknowledged(now, self.ack_timeout_s):
            return

        async def query() -> None:
            try:
                async with asyncio.timeout(QUERY_TIMEOUT_S):
                    await self.query_unacknowledged(now)
            except (ConnectionError, TimeoutError) as exc:
                self.log.warning(
                    "looking up unacknowledged orders failed: %r", exc,
                    extra={"event.action": "order_query_failed"},
                )  # fmt: skip

        self.query_task = asyncio.ensure_future(query())

    async def _alert_wedge(self, now: float) -> None:
        """A CRITICAL alert when a pair's intents keep being refused (once per episode)."""
        pair, rate = self.rejections.busiest(now)
        wedged = rate >= self.settings_risk.degraded_rejections_per_minute
        if wedged and not self.wedge_alerted:
            message = (
                f"pair {pair}: {rate} intents rejected in the last minute: risk keeps refusing "
                f"what it is asked (see the decisions)"
            )
            alert = Alert(now, Severity.CRITICAL, self.ctx.name, "intents_refused", message,
                          {"pair": pair})  # fmt: skip
            await self.execute([Raise(alert)])
        self.wedge_alerted = wedged

    def problems(self, now: float) -> list[str]:
        """What keeps this service from acting, in words (empty: it works)."""
        out = []
        ib = self.ctx.settings.ib
        if not self.conn.connected:
            out.append(f"IB not connected at {ib.host}:{ib.port}: no order can be placed")
        elif self.ib_link_lost:
            out.append("IB lost its link to its servers (error 1100): orders held")
        late = self.engine.tracker.unacknowledged(now, self.ack_timeout_s)
        if late:
            refs = ", ".join(sorted({t.intent_id for t in late}))
            out.append(
                f"{len(late)} orders not acknowledged by IB after {self.ack_timeout_s:g} s "
                f"({refs}): looking them up"
            )
        for pair, close in self.engine.closing.items():
            if now - close.since >= CLOSE_WAIT_ALERT_S:
                out.append(
                    f"closing pair {pair} waits {now - close.since:.0f} s for its orders at IB"
                )
        pair, rate = self.rejections.busiest(now)
        if rate >= self.settings_risk.degraded_rejections_per_minute:
            out.append(f"pair {pair}: {rate} intents rejected in the last minute")
        return out

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
        problems = self.problems(now)
        self.ctx.status.update(
            state="degraded" if problems else "ok",
            problems=problems,
            trading_state=str(self.engine.state),
            ib_connected=self.conn.connected,
            open_orders=len(self.engine.tracker.open_legs()),
        )
        await self._alert_wedge(now)

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
                    await self._refuse_invalid(entry.message, exc)
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
        self.conn.add_error_handler(self._connectivity)
        self.conn.ib.disconnectedEvent += self._disconnected
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
