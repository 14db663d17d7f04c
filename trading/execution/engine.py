"""The execution engine: the risk service's whole decision logic, with no I/O and no clock reads.

The live service and the backtest drive the same object; only the fill source differs (IB
through `trading.broker.execution`, or a simulated fill model).

    engine = ExecutionEngine(settings.risk, stop_z=settings.strategy.stop_z,
                             pair=settings.pair_spec())   # the pair's symbols (default TLT/TLTW)
    engine.on_market(msg)                        # Quote / OptionQuote / DataHealth / SpreadPoint
    decision = engine.decide(intent, now)        # RiskDecision; approved legs are now PLACING
    engine.order_sent(intent_id, leg_index, order_id, now)   # the order id, before placeOrder
    engine.placed(intent_id, leg_index, now)                 # placeOrder handed to the socket
    event = engine.on_status(StatusUpdate(order_id, status, filled, ...), now)
    engine.on_fill(fill)                         # bus Fill (idempotent by exec_id)
    event = engine.adopt(intent_id, leg_index, update, now)  # IB's answer to a query
    actions = engine.lose(intent_id, leg_index, now, why)    # IB does not know a sent order
    fills, actions = engine.reconcile_positions(ib_positions, now, tag)  # IB is the truth
    actions = engine.on_command(cmd, now)        # OperatorCommand -> [Action]
    actions = engine.tick(now)                   # stop-loss, z-stop, daily loss, legging
    engine.risk_status(now); engine.pnl(now); engine.positions(now)

Actions (what the caller must do, in order): `Cancel(order_ids)` cancels working orders,
`CancelAll()` cancels every order of the account, `Submit(intent)` gates and places a risk-made
intent (through `decide`, like any other), `Raise(alert)` appends an alert.

Closing a pair never waits on, nor races, its working orders: a flatten (risk's stops, the kill
switch, the daily loss) cancels the pair's working orders first and sends the closing intent
only once IB has finished them (cancelled, filled or lost), sized from what the pair then holds;
a strategy EXIT or STOP that arrives while the pair's earlier order is still working is refused
SUPERSEDED and carried out the same way, as risk's FLATTEN, instead of being refused until the
order is done (the strategy would ask again every bar).

Stop rules, checked on every tick (a pair that is already being flattened is skipped):
  pair stop-loss: a pair's P&L (realized + unrealized - commissions) <= -pair_stop_loss_usd
  z-stop: the latest spread z beyond stop_z against the pair's direction (holding TLTW long =
          LONG_SPREAD, stopped when z <= -stop_z; short TLTW stopped when z >= stop_z)
  daily loss: day P&L <= -daily_loss_limit_usd -> HALTED + cancel all + flatten every pair.
Calls held, checked on every tick (the rules: `trading.execution.calls`): the expiry backstop
  and a likely early assignment flatten the pair; IB's assignment, exercise or expiry of a call
  (executions without an orderRef) is booked to the pair holding it, alerted, and the pair is
  rebalanced to the contracts left (flattened when none is left). IB reports expiries after
  the close, when the gate refuses the rebalance (MARKET_CLOSED): a refused one is sent again
  every `SETTLEMENT_RETRY_S` until approved (alerted once).
Day P&L = total P&L now - total P&L at the first tick of the exchange day (New York date of
the marks' exchange time); the baseline is kept in `to_state()`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from trading.bus import (
    Alert,
    Fill,
    IntentPurpose,
    OperatorCommand,
    OrderEvent,
    OrderIntent,
    PnL,
    Position,
    RiskDecision,
    RiskReason,
    RiskStatus,
    Severity,
)
from trading.domain.orders import StatusUpdate
from trading.domain.pair import PairSpec
from trading.domain.risk import RiskCode
from trading.execution.book import Book, BrokerPosition
from trading.execution.calls import call_close_reason, settlement_intent, settlement_rebalance
from trading.execution.gate import GateView, RiskGate, intent_exposure
from trading.execution.intents import flatten_pair, repair_legging
from trading.execution.marks import Marks
from trading.execution.state import StateChange, TradingState, TradingStateMachine
from trading.execution.tracking import LegState, OrderTracker, order_event

if TYPE_CHECKING:
    from trading.settings import RiskSettings

__all__ = [
    "Cancel",
    "CancelAll",
    "ExecutionEngine",
    "Raise",
    "Submit",
]

SOURCE = "risk-management"
SETTLEMENT_GRACE_S = 1.0
"""The stock delivery arrives right after the option's settlement: rebalance after this."""
CLOSE_RETRY_S = 5.0
CLOSE_RETRY_MAX_S = 60.0
CLOSE_WAIT_ALERT_S = 10.0
"""A close still waiting this long for its pair's cancelled orders to finish is alerted."""
SETTLEMENT_RETRY_S = 60.0
"""A refused settlement rebalance or flatten (IB reports expiries after the close, when the
gate refuses MARKET_CLOSED) is sent again this often until it is approved."""


@dataclass(frozen=True, slots=True)
class Cancel:
    order_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CancelAll:
    reason: str


@dataclass(frozen=True, slots=True)
class Submit:
    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class Raise:
    alert: Alert


Action = Cancel | CancelAll | Submit | Raise


@dataclass(slots=True)
class PendingClose:
    """A flatten of a pair waiting for the pair's cancelled orders to be done."""

    purpose: IntentPurpose
    why: str
    since: float
    alerted: bool = False


@dataclass
class ExecutionEngine:
    limits: RiskSettings
    stop_z: float = 4.0
    aggressiveness_bp: float = 25.0
    """How far past the mid risk-made orders are priced (must stay inside price_band_bp)."""
    pair: PairSpec = field(default_factory=PairSpec)
    """The pair traded: its underlying and ETF symbols, the engine's only source for them."""
    marks: Marks = field(default_factory=Marks)
    book: Book = field(default_factory=Book)
    tracker: OrderTracker = field(default_factory=OrderTracker)
    machine: TradingStateMachine = field(default_factory=TradingStateMachine)
    day: str = ""
    day_start_total_usd: float = 0.0
    flattening: dict[str, str] = field(default_factory=dict)  # pair -> flatten intent id
    closing: dict[str, PendingClose] = field(default_factory=dict)
    """pair -> a flatten waiting for the pair's working orders to be done (their cancels
    sent) before it is sized and sent."""
    lost_alerted: set[str] = field(default_factory=set)
    refused_closes: dict[str, tuple[float, int]] = field(default_factory=dict)
    """pair -> (not before, refusals in a row) of risk's own close the gate refused."""
    decisions: dict[str, RiskDecision] = field(default_factory=dict)
    options: dict[int, tuple[str, float]] = field(default_factory=dict)  # con_id -> expiry, K
    settlements: dict[str, tuple[float, float, bool]] = field(default_factory=dict)
    """pair -> (time due, call contracts held before, long or short; a retry?) of an IB
    settlement (assignment, exercise or expiry) awaiting its rebalance."""
    settling: dict[str, tuple[str, float, bool]] = field(default_factory=dict)
    """pair -> (intent id, contracts before, a retry?) of a settlement's rebalance or flatten
    sent, watched until risk's decision on it: a refused one is sent again."""
    _seq: Any = field(default_factory=itertools.count)
    gate: RiskGate = field(init=False)

    def __post_init__(self) -> None:
        self.gate = RiskGate(self.limits, pair=self.pair)
        if not 0 < self.aggressiveness_bp < self.limits.price_band_bp:
            raise ValueError(
                f"aggressiveness_bp={self.aggressiveness_bp!r} must be inside "
                f"(0, price_band_bp={self.limits.price_band_bp!r})"
            )

    # inputs ---------------------------------------------------------------------------------

    def on_market(self, msg: Any) -> None:
        """A market message; raises ValueError (and stores nothing) when it fails validation.
        The book keeps the distributions announced and the exchange date (it books them)."""
        self.book.on_market(msg)
        self.marks.update(msg)
        expiry, strike = getattr(msg, "expiry", ""), getattr(msg, "strike", 0.0)
        if expiry and strike:
            self.options[msg.con_id] = (expiry, strike)

    def mark_prices(self) -> dict[int, float]:
        return {c: m.mid for c, m in self.marks.by_con_id.items()}

    def decide(self, intent: OrderIntent, now: float) -> RiskDecision:
        """Gate an intent; when approved its legs are registered (PLACING) and attributed."""
        known = self.decisions.get(intent.intent_id)
        if known is not None:
            return known
        refusal = self._close_refusal(intent, now)
        if refusal is not None:
            decision = RiskDecision(intent.intent_id, now, False, (refusal,))
            self.decisions[intent.intent_id] = decision
            return decision
        view = GateView(
            self.book, self.tracker, self.marks, self.machine.state, self.daily_pnl_usd()
        )
        decision = self.gate.decide(intent, view, now)
        self.decisions[intent.intent_id] = decision
        if decision.approved:
            self.book.attribute(intent.intent_id, intent.pair_id)
            self.tracker.register(intent, now)
            for leg in intent.legs:
                if leg.option_con_id and leg.option_expiry and leg.option_strike:
                    self.options[leg.option_con_id] = (leg.option_expiry, leg.option_strike)
        return decision

    def _close_refusal(self, intent: OrderIntent, now: float) -> RiskReason | None:
        """A strategy's EXIT or STOP closes what its pair holds, never more: each leg must not
        exceed the pair's holding in it (an exit sent while the entry's buy-write leg was
        unfilled sold buy-writes the pair never bought). While an earlier order of the pair is
        still working, the close is refused SUPERSEDED and risk carries it out itself: it
        cancels the working rest and flattens what the pair then holds. Risk's own flatten and
        repair intents are built from the holdings."""
        if intent.purpose not in (IntentPurpose.EXIT, IntentPurpose.STOP):
            return None
        if intent.intent_id in self.flattening.values():
            return None
        working = [
            t for t in self.tracker.open_legs()
            if t.pair_id == intent.pair_id and t.intent_id != intent.intent_id
        ]  # fmt: skip
        if working or intent.pair_id in self.closing:
            refs = ", ".join(sorted({t.intent_id for t in working})) or "its close"
            reason = intent.why.get("reason", "")
            why = f"{intent.purpose} {intent.intent_id} while {refs} worked" + (
                f": {reason}" if reason else ""
            )
            self._request_close(intent.pair_id, now, IntentPurpose.FLATTEN, why)
            return RiskReason(
                RiskCode.SUPERSEDED.value,
                f"pair {intent.pair_id} still has working orders ({refs}): risk cancels their "
                f"unfilled rest and flattens what the pair then holds",
            )
        held = {h.con_id: h.quantity for h in self.book.pair_holdings(intent.pair_id)}
        for leg in intent.legs:
            closes = intent_exposure((leg,))
            for con_id, change in closes.items():
                have = held.get(con_id, 0.0)
                if have * change >= 0 or abs(change) > abs(have) + 1e-9:
                    return RiskReason(
                        RiskCode.EXCEEDS_HOLDINGS.value,
                        f"pair {intent.pair_id} holds {have:g} of {con_id}; the {leg.kind} leg "
                        f"would change it by {change:+g}: a close may only reduce a holding",
                    )
        return None

    def resume(self, decision: RiskDecision) -> None:
        """An approval from before a restart whose intent is partly at IB already: its other
        legs are sent under it, not gated again (a refusal now would leave the pair legged
        with legs never sent; the legging rule repairs a leg that does not fill)."""
        if decision.approved:
            self.decisions[decision.intent_id] = decision

    def abandon(self, intent_id: str, now: float, why: str) -> list[OrderEvent]:
        """The legs of a refused intent that were never sent (restored from before a restart)
        are done: REJECTED, so nothing waits on them."""
        events = []
        for leg in self.tracker.legs_of(intent_id):
            if not leg.done and not leg.order_id:
                leg.state, leg.ib_status, leg.message, leg.updated_at = (
                    LegState.REJECTED,
                    "Rejected",
                    why,
                    now,
                )
                events.append(order_event(leg, now))
        return events

    def refuse_unsent(self, decision: RiskDecision) -> None:
        """An approved intent refused before its legs were sent (data flagged at the send):
        unsent legs lose their order ids (`abandon` closes them); the refusal is its decision."""
        for leg in self.tracker.legs_of(decision.intent_id):
            if leg.order_id and leg.sent_at is None and not leg.done:
                self.tracker.forget_order_id(leg)
        self.decisions[decision.intent_id] = decision

    def order_sent(self, intent_id: str, leg_index: int, order_id: int, now: float) -> None:
        """The order id a leg is (about to be) sent with: recorded before placeOrder."""
        self.tracker.assign_order_id(intent_id, leg_index, order_id, now)

    def placed(self, intent_id: str, leg_index: int, now: float) -> None:
        """The leg's placeOrder was handed to the socket: IB's acknowledgement is now due."""
        self.tracker.mark_sent(intent_id, leg_index, now)

    def adopt(
        self, intent_id: str, leg_index: int, update: StatusUpdate, now: float
    ) -> OrderEvent | None:
        """IB's answer for one of our legs, found by orderRef and contract in a reconciliation
        (open or completed orders; a completed order may come without its order id)."""
        leg = self.tracker.leg(intent_id, leg_index)
        if leg is None:
            return None
        if update.order_id and leg.order_id != update.order_id:
            self.tracker.assign_order_id(intent_id, leg_index, update.order_id, now)
        was = (leg.state, leg.filled)
        self.tracker.apply_status(leg, replace(update, message="reconciled with IB"), now)
        return order_event(leg, now) if (leg.state, leg.filled) != was else None

    def lose(self, intent_id: str, leg_index: int, now: float, why: str) -> list[Any]:
        """A leg sent to IB that IB does not know: never received. It is done (LOST); the
        intent is not sent again (its prices are old by now): the strategy and risk's rules
        decide afresh. A CRITICAL alert names the intent once. Returns [OrderEvent, Raise?]."""
        leg = self.tracker.leg(intent_id, leg_index)
        if leg is None or leg.done:
            return []
        self.tracker.mark_lost(leg, now, why)
        out: list[Any] = [order_event(leg, now)]
        if intent_id not in self.lost_alerted:
            self.lost_alerted.add(intent_id)
            message = (
                f"{leg.purpose} {intent_id} of pair {leg.pair_id}: order {leg.order_id} "
                f"({leg.leg.kind} {leg.leg.side} {leg.leg.quantity} {leg.leg.symbol}) was "
                f"never received by IB ({why}); not sent again"
            )
            out.append(
                self._alert(
                    now,
                    Severity.CRITICAL,
                    "order_lost",
                    message,
                    pair=leg.pair_id,
                    intent=intent_id,
                )
            )
        return out

    def on_status(self, update: StatusUpdate, now: float) -> OrderEvent | None:
        """Apply an IB order status; returns the audit event (None for an order not ours)."""
        leg = self.tracker.on_status(update, now)
        return None if leg is None else order_event(leg, now)

    def on_reject(self, order_id: int, code: int, message: str, now: float) -> OrderEvent | None:
        leg = self.tracker.on_rejected(order_id, f"IB error {code}: {message}", now)
        return None if leg is None else order_event(leg, now)

    def on_fill(self, fill: Fill, now: float | None = None) -> bool:
        """Book an execution once; returns False when it was already booked. ``now`` is when
        it arrived, on the engine's clock (the fill's own time is the exchange's: under a
        simulator it is another clock); by default the fill's time.

        An option execution without an intent that reduces a call its pair holds (IB's
        assignment, exercise or expiry, of a short or a long call) marks the pair for
        rebalancing on the next tick.
        """
        units_before = 0.0
        if not fill.intent_id and fill.sec_type == "OPT":
            pair = self.book._pair_for(fill)
            held = self.book.quantity(fill.con_id, pair)
            sign = 1.0 if str(fill.side) == "BUY" else -1.0
            if held * sign < 0:
                units_before = self._calls_held(pair)
        if not self.book.apply_fill(fill):
            return False
        if fill.intent_id:
            self.tracker.on_execution(
                fill.intent_id, fill.order_id, fill.perm_id, fill.sec_type, fill.con_id,
                fill.exec_id, fill.quantity, fill.ts if now is None else now,
            )  # fmt: skip
        if units_before > 0 and self.book.last_pair not in self.settlements:
            due = fill.ts + SETTLEMENT_GRACE_S
            self.settlements[self.book.last_pair] = (due, units_before, False)
        return True

    def reconcile_positions(
        self, broker: dict[int, BrokerPosition], now: float, tag: str
    ) -> tuple[list[Fill], list[Action]]:
        """Align the book with IB's positions (IB is the source of truth).

        Books the adjustment fills of `Book.adjustments` (each attributed to its pair) and
        returns them, for the fill stream, with a CRITICAL alert naming every difference;
        ([], []) when the book already agrees with IB.
        """
        differences = self.book.differences(broker)
        if not differences:
            return [], []
        names = {con_id: self.book.meta[con_id].local_symbol for con_id in self.book.meta}
        names.update({con_id: b.local_symbol or b.symbol for con_id, b in broker.items()})
        fills = []
        for pair, fill in self.book.adjustments(broker, now, tag):
            self.book.attribute(fill.intent_id, pair)
            if self.book.apply_fill(fill, pair):
                fills.append(fill)
        detail = "; ".join(
            f"{names.get(con_id, con_id)} book {mine:g} IB {theirs:g}"
            for con_id, (mine, theirs) in differences.items()
        )
        alert = self._alert(
            now,
            Severity.CRITICAL,
            "position_break",
            f"book differs from IB's positions, aligned to IB: {detail}",
        )
        return fills, [alert]

    def _calls_held(self, pair: str) -> float:
        """Option contracts the pair holds, long or short (each is one buy-write unit)."""
        return sum(abs(h.quantity) for h in self.book.pair_holdings(pair) if h.sec_type == "OPT")

    # commands and rules ---------------------------------------------------------------------

    def on_command(self, cmd: OperatorCommand, now: float) -> list[Action]:
        change = self.machine.apply_command(cmd, now)
        if change is None:
            return []
        if change.refused:
            return [self._alert(now, Severity.WARNING, "command_refused", change.refused)]
        return self._carry_out(change, now, f"cmd-{cmd.command_id}")

    def _carry_out(self, change: StateChange, now: float, tag: str) -> list[Action]:
        actions: list[Action] = [
            self._alert(
                now,
                Severity.WARNING,
                "trading_state",
                f"trading state {change.state}: {change.reason}",
            )
        ]
        if change.cancel_open_orders:
            actions.append(CancelAll(change.reason))
            for leg in self.tracker.open_legs():
                leg.cancel_requested = True
        if change.flatten:
            for pair in self.book.open_pairs():
                actions.extend(self._flatten(pair, now, IntentPurpose.FLATTEN, change.reason))
        return actions

    def tick(self, now: float) -> list[Action]:
        """Run the stop rules and the legging timer; returns what must be done."""
        actions: list[Action] = []
        self._roll_day()
        change = self.machine.check_daily_loss(
            self.daily_pnl_usd(), self.limits.daily_loss_limit_usd, self.day, now
        )
        if change is not None:
            actions.extend(self._carry_out(change, now, "daily-loss"))
        marks = self.mark_prices()
        actions.extend(self._refused_closes(now))
        for pair in self.book.open_pairs():
            if self._is_flattening(pair, now):
                continue
            pnl = self.book.pair_pnl(pair, marks)["total"]
            if pnl <= -self.limits.pair_stop_loss_usd:
                why = (
                    f"pair {pair} P&L {pnl:.2f} USD reached the stop-loss "
                    f"-{self.limits.pair_stop_loss_usd:.2f} USD"
                )
                actions.extend(self._flatten(pair, now, IntentPurpose.STOP, why))
                continue
            z_why = self._z_stop(pair)
            if z_why:
                actions.extend(self._flatten(pair, now, IntentPurpose.STOP, z_why))
        actions.extend(self._send_closes(now))
        actions.extend(self._legging(now))
        actions.extend(self._call_rules(now))
        actions.extend(self._retry_refused_settlements(now))
        actions.extend(self._rebalance_settled(now))
        return actions

    def _call_rules(self, now: float) -> list[Action]:
        """Expiry backstop (any call held) and early-assignment close (short calls only), see
        the module docstring."""
        as_of = self.marks.exchange_date()
        if as_of is None:
            return []
        actions: list[Action] = []
        for pair in self.book.open_pairs():
            if self._is_flattening(pair, now):
                continue
            for h in self.book.pair_holdings(pair):
                # A long call (a sold buy-write) is closed before expiry like a short one:
                # held through it, it is exercised or expires and leaves the pair unbalanced.
                if h.sec_type != "OPT" or h.quantity == 0 or h.con_id not in self.options:
                    continue
                expiry_text, strike = self.options[h.con_id]
                sessions = self.limits.close_short_call_sessions_before_expiry
                why = call_close_reason(
                    pair,
                    h,
                    expiry_text,
                    strike,
                    as_of,
                    sessions,
                    self.gate.calendar,
                    self.marks,
                    self.pair.underlying,
                )
                if why:
                    actions.extend(self._flatten(pair, now, IntentPurpose.FLATTEN, why))
                    break
        return actions

    def _retry_refused_settlements(self, now: float) -> list[Action]:
        """A settlement's rebalance or flatten refused by the gate is due again in
        `SETTLEMENT_RETRY_S` (alerted once, at its first refusal)."""
        actions: list[Action] = []
        for pair, (intent_id, units_before, retry) in list(self.settling.items()):
            decision = self.decisions.get(intent_id)
            if decision is None:
                continue  # submitted, not yet decided by the caller
            del self.settling[pair]
            if decision.approved or pair in self.settlements:
                continue
            self.settlements[pair] = (decision.ts + SETTLEMENT_RETRY_S, units_before, True)
            if not retry:
                again = f"sent again every {SETTLEMENT_RETRY_S:g} s until approved"
                actions.append(
                    self._refused(
                        now, "settlement_refused", pair, decision, "after IB's settlement", again
                    )
                )
        return actions

    def _rebalance_settled(self, now: float) -> list[Action]:
        """After an assignment, exercise or expiry: cut TLTW in proportion to the contracts
        left, TLT to -100 x (net contracts left); a pair with no call left is flattened. A
        retry (see `_retry_refused_settlements`) is not alerted again."""
        actions: list[Action] = []
        for pair, (due, units_before, retry) in list(self.settlements.items()):
            if now < due:
                continue
            del self.settlements[pair]
            units_after = self._calls_held(pair)
            message = (
                f"pair {pair}: call settled by IB (assignment, exercise or expiry), "
                f"{units_before:g} -> {units_after:g} buy-write units"
            )
            if not retry:
                actions.append(
                    self._alert(now, Severity.CRITICAL, "assignment", message, pair=pair)
                )
            if units_after <= 0:
                sent = self._flatten(pair, now, IntentPurpose.FLATTEN, message)
                if retry:  # the retried flatten is not alerted again either
                    sent = [a for a in sent if not isinstance(a, Raise)]
                actions.extend(sent)
                for action in sent:
                    if isinstance(action, Submit):
                        self.settling[pair] = (action.intent.intent_id, units_before, retry)
                continue
            plan = settlement_rebalance(
                pair,
                self.book.pair_holdings(pair),
                units_before,
                units_after,
                self.marks,
                self.aggressiveness_bp,
                self.pair,
            )
            for problem in plan.unmarked:
                actions.append(
                    self._alert(now, Severity.CRITICAL, "rebalance_incomplete", problem, pair=pair)
                )
            if plan.legs:
                intent_id = f"rebalance-{pair}-{int(now * 1000)}-{next(self._seq)}"
                intent = settlement_intent(
                    pair, intent_id, now, plan, message, units_before, units_after
                )
                self.flattening[pair] = intent.intent_id
                self.settling[pair] = (intent.intent_id, units_before, retry)
                actions.append(Submit(intent))
        return actions

    def _z_stop(self, pair: str) -> str:
        spread = self.marks.spread
        tltw_id = self.marks.con_id_by_symbol.get(self.pair.etf)
        if spread is None or tltw_id is None:
            return ""
        shares = self.book.quantity(tltw_id, pair)
        if shares > 0 and spread.z <= -self.stop_z:
            return f"z {spread.z:.2f} beyond the stop -{self.stop_z:g} for long spread {pair}"
        if shares < 0 and spread.z >= self.stop_z:
            return f"z {spread.z:.2f} beyond the stop {self.stop_z:g} for short spread {pair}"
        return ""

    def _is_flattening(self, pair: str, now: float) -> bool:
        """A close of the pair is under way: requested, waiting for its cancels, sent and not
        yet done, or refused and waiting for its retry (see `_refused_closes`)."""
        if pair in self.closing:
            return True
        retry = self.refused_closes.get(pair)
        if retry is not None and now < retry[0]:
            return True
        intent_id = self.flattening.get(pair)
        if intent_id is None:
            return False
        legs = self.tracker.legs_of(intent_id)
        if legs and not all(t.done for t in legs):
            return True
        decision = self.decisions.get(intent_id)
        if not legs and decision is None:
            return True  # submitted, not yet decided by the caller
        if decision is not None and not decision.approved:
            return True  # `_refused_closes` schedules its retry at the next tick
        del self.flattening[pair]
        self.refused_closes.pop(pair, None)
        return False

    def _refused_closes(self, now: float) -> list[Action]:
        """A close of risk's own that the gate refused (stale data, the market closed) is sent
        again after 5 s, doubling to CLOSE_RETRY_MAX_S, not on every tick; alerted once."""
        actions: list[Action] = []
        settling = {intent_id for intent_id, *_ in self.settling.values()}
        for pair, intent_id in list(self.flattening.items()):
            decision = self.decisions.get(intent_id)
            if decision is None or decision.approved or self.tracker.legs_of(intent_id):
                continue
            del self.flattening[pair]
            if intent_id in settling:
                continue  # a settlement's rebalance has its own retry
            _, refusals = self.refused_closes.get(pair, (0.0, 0))
            wait = min(CLOSE_RETRY_S * 2**refusals, CLOSE_RETRY_MAX_S)
            self.refused_closes[pair] = (decision.ts + wait, refusals + 1)
            if refusals == 0:
                again = f"sent again after {wait:g} s, backing off to {CLOSE_RETRY_MAX_S:g} s"
                actions.append(self._refused(now, "close_refused", pair, decision, "", again))
        return actions

    def _flatten(self, pair: str, now: float, purpose: IntentPurpose, why: str) -> list[Action]:
        """Close the pair: alert, cancel its working orders, and send the closing intent once
        they are done (at once when none works); see `_send_closes`."""
        if self._is_flattening(pair, now):
            return []
        severity = Severity.CRITICAL if purpose is IntentPurpose.STOP else Severity.WARNING
        retrying = pair in self.refused_closes  # alerted at its first refusal
        actions: list[Action] = (
            [] if retrying else [self._alert(now, severity, str(purpose), why, pair=pair)]
        )
        self._request_close(pair, now, purpose, why)
        actions.extend(self._send_closes(now, only=pair))
        return actions

    def _request_close(self, pair: str, now: float, purpose: IntentPurpose, why: str) -> None:
        """Mark the pair for closing: `_send_closes` cancels its working orders (they would
        re-open what is closed, or fill beyond it) and sends the close once they are done."""
        if pair not in self.closing:
            self.closing[pair] = PendingClose(purpose, why, now)

    def _send_closes(self, now: float, only: str | None = None) -> list[Action]:
        """Cancel the working orders of each pair being closed; send its close once none works,
        sized from what the pair holds then. A pair whose orders are still not done
        CLOSE_WAIT_ALERT_S after the close was asked is alerted once (IB has not answered for
        them: the runtime queries it)."""
        actions: list[Action] = []
        for pair, close in list(self.closing.items()):
            if only is not None and pair != only:
                continue
            working = [t for t in self.tracker.open_legs() if t.pair_id == pair]
            if not working:
                del self.closing[pair]
                actions.extend(self._send_flatten(pair, now, close.purpose, close.why))
                continue
            to_cancel = tuple(t.order_id for t in working if t.order_id and not t.cancel_requested)
            for t in working:
                t.cancel_requested = True
            if to_cancel:
                actions.append(Cancel(to_cancel))
            if now - close.since >= CLOSE_WAIT_ALERT_S and not close.alerted:
                close.alerted = True
                refs = ", ".join(sorted({t.intent_id for t in working}))
                message = (
                    f"pair {pair}: closing waits for {refs} to be done at IB "
                    f"({now - close.since:.0f} s after the cancel)"
                )
                actions.append(
                    self._alert(now, Severity.CRITICAL, "close_waiting", message, pair=pair)
                )
        return actions

    def _send_flatten(
        self, pair: str, now: float, purpose: IntentPurpose, why: str
    ) -> list[Action]:
        intent_id = f"{purpose}-{pair}-{int(now * 1000)}-{next(self._seq)}"
        plan = flatten_pair(
            pair,
            self.book.pair_holdings(pair),
            self.marks,
            intent_id,
            now,
            purpose,
            self.aggressiveness_bp,
            why={"reason": why},
            underlying=self.pair.underlying,
        )
        actions: list[Action] = []
        if plan.unflattened:
            actions.append(
                self._alert(
                    now,
                    Severity.CRITICAL,
                    "flatten_incomplete",
                    f"pair {pair}: cannot close {'; '.join(plan.unflattened)}",
                    pair=pair,
                )
            )
        if plan.intent is not None:
            self.flattening[pair] = plan.intent.intent_id
            actions.append(Submit(plan.intent))
        return actions

    def _legging(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for breach in self.tracker.legging_breaches(now, self.limits.legging_timeout_s):
            self.tracker.mark_legging_handled(breach.intent_id)
            if self._is_flattening(breach.pair_id, now):
                continue  # the pair's close, sized from its holdings, repairs it too
            legs = self.tracker.legs_of(breach.intent_id)
            open_ids = tuple(t.order_id for t in legs if not t.done and t.order_id)
            for t in legs:
                if not t.done:
                    t.cancel_requested = True
            if open_ids:
                actions.append(Cancel(open_ids))
            how = "completing" if breach.complete else "unwinding"
            fractions = ", ".join(f"{f:.0%}" for f in breach.fractions)
            actions.append(
                self._alert(
                    now,
                    Severity.CRITICAL,
                    "legging",
                    f"intent {breach.intent_id} legged (filled {fractions}) for "
                    f"{now - breach.since:.1f} s: {how}",
                    pair=breach.pair_id,
                    intent=breach.intent_id,
                )
            )
            try:
                repair = repair_legging(breach, legs, self.marks, now, self.aggressiveness_bp)
            except ValueError as exc:
                actions.append(self._alert(now, Severity.CRITICAL, "legging_unrepaired", str(exc)))
                continue
            if repair is not None:
                actions.append(Submit(repair))
        return actions

    # views ----------------------------------------------------------------------------------

    def _roll_day(self) -> None:
        as_of = self.marks.exchange_date()
        if as_of is None:
            return
        day = as_of.isoformat()
        if day != self.day:
            self.day = day
            self.day_start_total_usd = self.book.total_pnl(self.mark_prices())["total"]

    def daily_pnl_usd(self) -> float:
        return self.book.total_pnl(self.mark_prices())["total"] - self.day_start_total_usd

    def pnl(self, now: float) -> PnL:
        return self.book.pnl(self.mark_prices(), now)

    def positions(self, now: float) -> list[Position]:
        return self.book.positions(self.mark_prices(), now)

    def risk_status(self, now: float) -> RiskStatus:
        view = GateView(
            self.book, self.tracker, self.marks, self.machine.state, self.daily_pnl_usd()
        )
        usage = self.gate.usage(view, self.mark_prices(), now)
        return RiskStatus(now, self.machine.state, self.machine.reason, usage)

    def _refused(
        self, now: float, code: str, pair: str, decision: RiskDecision, what: str, again: str
    ) -> Raise:
        """The CRITICAL alert of one of risk's own intents that the gate refused."""
        reasons = "; ".join(f"{r.code}: {r.message}" for r in decision.reasons)
        message = f"pair {pair}: {decision.intent_id} {what} refused ({reasons}): {again}"
        return self._alert(now, Severity.CRITICAL, code, message.replace("  ", " "), pair=pair)

    def _alert(
        self, now: float, severity: Severity, code: str, message: str, **labels: Any
    ) -> Raise:
        return Raise(Alert(now, severity, SOURCE, code, message, labels))

    # persistence ----------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "machine": self.machine.to_state(),
            "day": self.day,
            "day_start_total_usd": self.day_start_total_usd,
            "book": self.book.to_state(),
        }

    def restore(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.machine = TradingStateMachine.from_state(state["machine"])
        self.day = state.get("day", "")
        self.day_start_total_usd = float(state.get("day_start_total_usd", 0.0))
        for intent_id, pair in state.get("book", {}).get("pair_of_intent", {}).items():
            self.book.attribute(intent_id, pair)

    @property
    def state(self) -> TradingState:
        return self.machine.state
