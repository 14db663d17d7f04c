"""The replay: bus messages through the live strategy and risk engines, with simulated fills.

One loop drives the same objects as the live services, with nothing re-implemented:

* `trading.strategy.engine.StrategyEngine` (the strategy service's engine) gets every message
  through ``on_message``; each bar close yields spread points, signals and intents;
* `trading.execution.engine.ExecutionEngine` (the risk service's engine) gates each intent
  (``decide``), is told of orders (``order_sent``, ``on_status``) and fills (``on_fill``), and
  runs its stop rules (``tick``) at every bar close while anything is held or working; the
  orders it makes itself (flatten, stop, legging repair) go through ``decide`` like any other;
* the strategy gets the decisions, the fills and the risk state, as over Redis;
* `trading.backtest.fills.FillModel` stands in for IB, including its settlement of an option
  held to expiry: at the first bar close at or after 16:00 ET of the expiry day, every call
  still held is exercised/assigned (in the money by >= 0.01 USD against the TLT mid) or
  expires worthless, reported to the risk engine as IB reports it to the live risk service,
  executions without an orderRef through ``on_fill`` (the live service books them from
  ``ib.fills()``); the risk engine then rebalances or flattens the rest of the pair by its own
  rule, and the expired contract, flat, is no longer an instrument of the book.

Time: the exchange timestamps of the data are the clock (``now`` of every engine call is the
bar close the intent was made at); there is no wall clock, so a replay is deterministic.
Latency is zero: an intent made at a bar close is gated and filled on the quotes of that bar
close (the prices it was computed from), the optimistic end; the commissions and the half
spread are still paid. Bars are the strategy's, aligned to the session: a daily bar
(``bar_seconds`` >= a session) closes at the session's close, and its orders are gated and
filled there on the closing quotes, as market-on-close orders would be (the gate counts the
closing instant as the session's); a limit that does not fill rests and is cancelled at the
next bar, the next session. :meth:`Replay.finish` closes the last bar, which no later message
closes.

Distributions: the tape's ``Dividends`` go to the risk engine as they come (its book credits
and debits the shares held over each ex-date, `trading.execution.book`), so the equity and the
P&L include them, for TLT and TLTW alike.

The risk engine's marks are applied lazily (the latest quote per conId is kept, and applied
before the engine is asked anything): a mark only ever holds the latest quote, so this gives
the same answers as applying every tick, at a fraction of the cost while flat.

Equity = ``capital_usd`` + the book's total P&L (realized - commissions + unrealized at mids),
sampled at every bar close.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from trading.backtest.fills import ExpiringOption, FillModel, LegExecution, RestingOrder
from trading.bus import (
    Alert,
    DataHealth,
    Dividends,
    Fill,
    Message,
    OptionQuote,
    OrderEvent,
    OrderIntent,
    Quote,
    RiskDecision,
    Signal,
    SpreadPoint,
)
from trading.domain.costs import pair_round_trip_cost_usd
from trading.domain.market_hours import EXCHANGE_TIMEZONE
from trading.domain.options import EXPIRY_CLOSE_TIME
from trading.domain.orders import StatusUpdate
from trading.domain.pnl import Distribution
from trading.domain.signals import SpreadPosition
from trading.execution.engine import Cancel, CancelAll, ExecutionEngine, Raise, Submit
from trading.settings import Settings
from trading.strategy.engine import RefusedMessage, StepResult, StrategyEngine
from trading.strategy.intents import size_legs


@dataclass(frozen=True, slots=True)
class EquityPoint:
    ts: float
    equity_usd: float
    gross_notional_usd: float
    """Gross notional held (sum of |quantity x multiplier x mid|) at this bar close."""


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """An intent, risk's decision on it, and what filled (in order of decision)."""

    intent: OrderIntent
    decision: RiskDecision
    executions: tuple[LegExecution, ...] = ()
    source: str = "strategy"
    """"strategy" or "risk" (flatten, stop and legging repairs the risk engine makes)."""


@dataclass
class BacktestResult:
    """Everything a replay produced, in time order."""

    settings: Settings
    equity: list[EquityPoint] = field(default_factory=list)
    spread_points: list[SpreadPoint] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    records: list[IntentRecord] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    fill_mids: dict[str, float] = field(default_factory=dict)
    """The mid of each fill's instrument when it filled, by exec id (the half-spread cost)."""
    alerts: list[Alert] = field(default_factory=list)
    settlements: list[Fill] = field(default_factory=list)
    """Executions of options settled at expiry (also in ``fills``)."""
    messages: int = 0
    bad_messages: int = 0
    bars: int = 0
    skipped_bars: dict[str, int] = field(default_factory=dict)
    distributions: dict[str, list[Distribution]] = field(default_factory=dict)
    """Every distribution the tape announced, by symbol (set by `Replay.finish`)."""
    distributions_usd: float = 0.0
    """The book's distributions at the end: credited on shares held long, debited short."""
    nominal_cost_bp: float = math.nan
    """A full-size pair's round trip (``max_gross_notional_usd``) on the last quotes: bid/ask
    of every leg and the commissions both ways, in bp of its TLTW leg (set by `finish`)."""

    @property
    def intents(self) -> list[OrderIntent]:
        return [r.intent for r in self.records]

    @property
    def capital_usd(self) -> float:
        return self.settings.strategy.capital_usd


YOUNG_COLLECTION_EVERY = 50_000
"""Allocations between two collections of the youngest generation during a replay (Python's
default is 700). A replay allocates a few objects per message (the message, a checked mid, a
bar's records), nearly none of them in a reference cycle, and keeps a growing share of them
(spread points, records, the tape's chunk): at 700 the collector ran 8,000 times a month of
tape and traversed what the replay keeps on every older-generation pass. Measured with
bench/bench_backtest.py on 252 sessions (5.8M ticks), alternating with the default, load
1.0-1.2: tape generation 314k, 298k -> 510k, 424k ticks/s; the replay's own figure within its
noise (309k, 289k -> 307k, 261k); peak memory unchanged (400 MB on 20 sessions either way)."""

_collect_rarely_depth = 0


@contextlib.contextmanager
def collect_rarely() -> Iterator[None]:
    """Run the block with the cyclic garbage collector's youngest generation collected every
    `YOUNG_COLLECTION_EVERY` allocations and the oldest a tenth as often as by default; the
    thresholds before it are restored when the outermost such block ends. Reference counting
    frees everything else as usual."""
    global _collect_rarely_depth
    before = gc.get_threshold()
    if _collect_rarely_depth == 0:
        gc.set_threshold(YOUNG_COLLECTION_EVERY, before[1], before[2] * 10)
    _collect_rarely_depth += 1
    try:
        yield
    finally:
        _collect_rarely_depth -= 1
        if _collect_rarely_depth == 0:
            gc.set_threshold(*before)


class Replay:
    """Drives the engines over a message stream; see the module docstring."""

    def __init__(self, settings: Settings, fill_model: FillModel | None = None) -> None:
        self.settings = settings
        self.strategy = StrategyEngine.from_settings(settings)
        self.execution = ExecutionEngine(
            settings.risk, stop_z=settings.strategy.stop_z, pair=settings.pair_spec()
        )
        self.fills = fill_model or FillModel()
        self.result = BacktestResult(settings)
        self._pending_marks: dict[int, Quote | OptionQuote] = {}
        self._risk_state = str(self.execution.state)
        self._flat_equity = settings.strategy.capital_usd
        self._held = False
        self._expiry_close: dict[str, float] = {}

    # the loop -------------------------------------------------------------------------------

    def run(
        self, messages: Iterable[Message], on_bar: Callable[[float], None] | None = None
    ) -> BacktestResult:
        """Replay ``messages`` (generated lazily or not) under `collect_rarely`."""
        with collect_rarely():
            return self._run(messages, on_bar)

    def _run(
        self, messages: Iterable[Message], on_bar: Callable[[float], None] | None
    ) -> BacktestResult:
        result = self.result
        strategy = self.strategy
        pending = self._pending_marks
        # A book handed over non-empty (restored, or seeded by a test) is watched from the start.
        self._held = bool(self.execution.book.open_pairs())
        for msg in messages:
            result.messages += 1
            bad = False
            try:
                step = strategy.on_message(msg)
            except ValueError as exc:
                # The live service drops the one message, counts it and goes on; the bar it
                # closed before it was refused stands.
                result.bad_messages += 1
                if not isinstance(exc, RefusedMessage):
                    continue
                step, bad = exc.closed, True
            if step.bar_end_ts is not None:
                self._bar_closed(step)
                if on_bar is not None:
                    on_bar(step.bar_end_ts)
            if bad:
                continue
            if isinstance(msg, Quote | OptionQuote):
                pending[msg.con_id] = msg
            elif isinstance(msg, DataHealth | Dividends):
                try:
                    self.execution.on_market(msg)
                except ValueError:
                    result.bad_messages += 1
        return result

    def finish(
        self, on_bar: Callable[[float], None] | None = None, close_open_bar: bool = True
    ) -> BacktestResult:
        """Close the bar still open at its end (``close_open_bar``): the run's last bar, which
        no later message closes; then the run's totals (call once, after the last `run`)."""
        step = self.strategy.close_open_bar() if close_open_bar else StepResult()
        self._apply_marks()
        if step.bar_end_ts is not None:
            self._bar_closed(step)
            if on_bar is not None:
                on_bar(step.bar_end_ts)
        book = self.execution.book
        self.result.distributions = {s: list(d.values()) for s, d in book.distributions.items()}
        self.result.distributions_usd = book.total_pnl(self.execution.mark_prices())[
            "distributions"
        ]
        self.result.nominal_cost_bp = self._nominal_cost_bp()
        return self.result

    def _nominal_cost_bp(self) -> float:
        """See `BacktestResult.nominal_cost_bp` (NaN when a quote or the hedge is missing)."""
        points = self.result.spread_points
        marks = self.execution.marks
        pair = self.execution.pair
        tlt = marks.get(marks.con_id_by_symbol.get(pair.underlying, 0))
        tltw = marks.get(marks.con_id_by_symbol.get(pair.etf, 0))
        call = marks.get(points[-1].call_con_id) if points else None
        if tlt is None or tltw is None or call is None:
            return math.nan
        point = points[-1]
        try:
            legs = size_legs(
                SpreadPosition.LONG_SPREAD, self.settings.strategy.max_gross_notional_usd,
                point.beta, tltw.mid, tlt.mid, call.mid, call.con_id, point.call_expiry,
                point.call_strike,
            )  # fmt: skip
            cost = pair_round_trip_cost_usd(
                legs.tltw_shares, legs.buy_write_units, (tltw.bid, tltw.ask),
                (tlt.bid, tlt.ask), (call.bid, call.ask), self.fills.schedule,
            )  # fmt: skip
        except ValueError:
            return math.nan
        if legs.tltw_shares <= 0:
            return math.nan
        return cost / (legs.tltw_shares * tltw.mid) * 1e4

    def _bar_closed(self, step) -> None:
        result = self.result
        now = float(step.bar_end_ts)
        result.bars += 1
        if step.skipped:
            key = step.skipped.split(":", 1)[0]
            result.skipped_bars[key] = result.skipped_bars.get(key, 0) + 1
        if step.spread_point is not None:
            result.spread_points.append(step.spread_point)
            self.execution.on_market(step.spread_point)
        result.signals.extend(step.signals)
        active = bool(step.intents) or self._held or bool(self.fills.resting)
        if active:
            self._apply_marks()
            for intent in step.intents:
                self._submit(intent, now, "strategy")
            self._retry_resting(now)
            self._run_actions(self.execution.tick(now), now)
            if self._held:
                self._settle_expiries(now)
            self._sync_risk_state(now)
        self._record_equity(now)

    # marks and risk state -------------------------------------------------------------------

    def _apply_marks(self) -> None:
        if not self._pending_marks:
            return
        for msg in self._pending_marks.values():
            try:
                self.execution.on_market(msg)
            except ValueError:
                self.result.bad_messages += 1
        self._pending_marks.clear()

    def _sync_risk_state(self, now: float) -> None:
        state = str(self.execution.state)
        if state != self._risk_state:
            self._risk_state = state
            self.strategy.on_risk_status(self.execution.risk_status(now))

    # orders ---------------------------------------------------------------------------------

    def _submit(self, intent: OrderIntent, now: float, source: str) -> None:
        execution = self.execution
        if source == "risk":
            # As the live strategy reads risk's own intents from the intents stream: a stop or
            # flatten of our pair leaves it flat (else it keeps sending exits risk refuses).
            self.result.signals.extend(self.strategy.on_risk_intent(intent))
        decision = execution.decide(intent, now)
        self.result.signals.extend(self.strategy.on_decision(decision))
        executions: list[LegExecution] = []
        if decision.approved:
            for index in range(len(intent.legs)):
                order_id = self.fills.next_order_id()
                execution.order_sent(intent.intent_id, index, order_id, now)
                done = self._try(intent, index, order_id, now)
                if done is None:
                    working = StatusUpdate(
                        order_id, "Submitted", 0.0, intent.legs[index].quantity, 0.0
                    )
                    self._event(execution.on_status(working, now))
                    self.fills.resting[order_id] = RestingOrder(
                        intent, index, order_id, _exchange_day(now)
                    )
                else:
                    executions.append(done)
        self.result.records.append(IntentRecord(intent, decision, tuple(executions), source))

    def _try(
        self, intent: OrderIntent, index: int, order_id: int, now: float
    ) -> LegExecution | None:
        try:
            done = self.fills.try_fill(intent, index, order_id, self.execution.marks, now)
        except ValueError as exc:
            self._event(self.execution.on_reject(order_id, 201, str(exc), now))
            return None
        if done is None:
            return None
        quantity = float(intent.legs[index].quantity)
        for fill in done.fills:
            self._book(fill)
        filled = StatusUpdate(order_id, "Filled", quantity, 0.0, done.price)
        self._event(self.execution.on_status(filled, now))
        return done

    def _event(self, event: OrderEvent | None) -> None:
        """Risk's order event to the strategy, as the live one reads them off the stream."""
        if event is not None:
            self.result.signals.extend(self.strategy.on_order_event(event))

    def _book(self, fill: Fill) -> None:
        if self.execution.on_fill(fill):
            self.strategy.on_fill(fill)
            self.result.fills.append(fill)
            mark = self.execution.marks.get(fill.con_id)
            if mark is not None:
                self.result.fill_mids[fill.exec_id] = mark.mid
        self._held = bool(self.execution.book.open_pairs())
        if not self._held:
            self._flat_equity = self._equity_now()

    def _retry_resting(self, now: float) -> None:
        today = _exchange_day(now)
        for order_id, order in list(self.fills.resting.items()):
            if order.day != today:
                self._cancel(order_id, now)
                continue
            done = self._try(order.intent, order.leg_index, order_id, now)
            if done is not None:
                del self.fills.resting[order_id]
                self._attach(order.intent.intent_id, done)

    def _attach(self, intent_id: str, done: LegExecution) -> None:
        records = self.result.records
        for i in range(len(records) - 1, -1, -1):
            if records[i].intent.intent_id == intent_id:
                r = records[i]
                records[i] = IntentRecord(r.intent, r.decision, (*r.executions, done), r.source)
                return

    def _cancel(self, order_id: int, now: float) -> None:
        order = self.fills.resting.pop(order_id, None)
        if order is not None:
            remaining = float(order.intent.legs[order.leg_index].quantity)
            cancelled = StatusUpdate(order_id, "Cancelled", 0.0, remaining, 0.0)
            self._event(self.execution.on_status(cancelled, now))

    def _run_actions(self, actions: list, now: float) -> None:
        for action in actions:
            if isinstance(action, Submit):
                self._submit(action.intent, now, "risk")
            elif isinstance(action, Cancel):
                for order_id in action.order_ids:
                    self._cancel(order_id, now)
            elif isinstance(action, CancelAll):
                for order_id in list(self.fills.resting):
                    self._cancel(order_id, now)
            elif isinstance(action, Raise):
                self.result.alerts.append(action.alert)

    # expiry ---------------------------------------------------------------------------------

    def _settle_expiries(self, now: float) -> None:
        """Settle every call held at or after its expiry's close (see the module docstring)."""
        execution = self.execution
        book = execution.book
        for con_id, quantity in book.net_quantities().items():
            meta = book.meta.get(con_id)
            if abs(quantity) <= 1e-9 or meta is None or meta.sec_type != "OPT":
                continue
            known = execution.options.get(con_id)
            if known is None:
                raise ValueError(f"option conId {con_id} is held but its expiry is unknown")
            expiry, strike = known
            if now < self._close_of(expiry):
                continue
            underlying = execution.pair.underlying
            stock_id = execution.marks.con_id_by_symbol.get(underlying)
            spot = None if stock_id is None else execution.marks.mid(stock_id)
            if stock_id is None or spot is None:
                raise ValueError(
                    f"no {underlying} quote to settle option conId {con_id} at its expiry"
                )
            option = ExpiringOption(con_id, meta.symbol, meta.local_symbol, expiry, strike)
            fills = self.fills.settle_expiry(option, quantity, spot, stock_id, now, underlying)
            for fill in fills:
                if execution.on_fill(fill):
                    self.strategy.on_fill(fill)
                    self.result.fills.append(fill)
                    self.result.settlements.append(fill)
        self._held = bool(book.open_pairs())
        if not self._held:
            self._flat_equity = self._equity_now()

    def _close_of(self, expiry: str) -> float:
        """16:00 New York on the expiry date (YYYYMMDD), as epoch seconds."""
        close = self._expiry_close.get(expiry)
        if close is None:
            day = datetime.strptime(expiry, "%Y%m%d").date()
            moment = datetime.combine(day, EXPIRY_CLOSE_TIME, tzinfo=EXCHANGE_TIMEZONE)
            close = self._expiry_close[expiry] = moment.timestamp()
        return close

    # equity ---------------------------------------------------------------------------------

    def _equity_now(self) -> float:
        total = self.execution.book.total_pnl(self.execution.mark_prices())["total"]
        return self.settings.strategy.capital_usd + total

    def _record_equity(self, now: float) -> None:
        if not self._held:
            self.result.equity.append(EquityPoint(now, self._flat_equity, 0.0))
            return
        marks = self.execution.mark_prices()
        book = self.execution.book
        gross = 0.0
        for con_id, quantity in book.net_quantities().items():
            meta = book.meta.get(con_id)
            multiplier = meta.multiplier if meta is not None else 1.0
            gross += abs(quantity * multiplier * marks.get(con_id, 0.0))
        total = book.total_pnl(marks)["total"]
        self.result.equity.append(
            EquityPoint(now, self.settings.strategy.capital_usd + total, gross)
        )


def _exchange_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(EXCHANGE_TIMEZONE).date().isoformat()
