"""The strategy engine: bus messages in, spread points, signals and order intents out. No I/O.

The live service (trading/services/strategy.py) and the backtest drive this same object; nothing
here reads a clock, a socket or Redis. Times come from the messages (``ts_exchange``) or the caller.

API::

    engine = StrategyEngine.from_settings(settings)          # or StrategyEngine(config, ...)
    # market data: O(1) each, raise ValueError naming the field on bad input
    engine.on_quote(Quote) / on_option(OptionQuote) / on_chain(OptionChain) / on_nav(EtfNav)
    engine.on_dividends(Dividends) / on_health(DataHealth)
    # the risk gate's answers
    engine.on_risk_status(RiskStatus) / on_decision(RiskDecision) / on_fill(Fill)
    # bars
    result = engine.step(ts_exchange, now_wall=None)  # closes the open bar if ts_exchange is past
                                                      # its end; else an empty StepResult
    result = engine.on_message(msg, now_wall=None)    # step(msg's exchange time), then apply msg
                                                      # (a bad msg that closed a bar: RefusedMessage
                                                      # with the bar's result in .closed)
    result = engine.close_bar(bar_end_ts, now_wall=None)   # close explicitly (backtests)
    result = engine.close_open_bar()                  # the end of a run: close the bar still open
    engine.to_state() -> dict (JSON types);  StrategyEngine.from_settings(...).restore(state)

``StepResult`` holds the bar's ``spread_point`` (None while warming up or skipped), ``signals``,
``intents`` to append to the intent stream, and ``skipped`` (why the bar produced nothing).

Bars: the signal runs once per bar of ``bar_seconds`` of exchange time aligned to the exchange
session (`trading.domain.market_hours.SessionBars`: counted from the open, the last one cut at
the close; a bar of a session or more, e.g. 86,400, is the session, closing at its close, a
half day's at 13:00), on the latest mids at the bar's close; ticks only update the latest
prices, so a burst of ticks costs O(1) each and the latest state is what is acted on (ticks are
conflated into the bar). A gap (night, halt) closes one bar, not one per missing minute. The
bar closes when the first message of a later bar arrives (the bar's end is its timestamp), with
the prices as they stood before that message: a quote stamped at the close is the session's,
one after it opens the next session's first bar, so a daily bar closes on the closing quotes.

Each bar close: (1) data checks (DataHealth not OK for TLT, TLTW or the held call; no quote of
TLT/TLTW for ``stale_after_s`` of wall time when ``now_wall`` is given) -> skipped, nothing
sampled; (2) distributions gone ex since the previous bar are added back (TLT's into the
buy-write index, TLTW's into its total-return price); (3) the buy-write index is marked, rolling
its call by the roll rule (`trading.strategy.legs`); (4) x = log index, y = log TLTW total
return; the hedge (delta-neutral, rolling OLS or Kalman: `trading.domain.hedge`) and the
rolling z-score of the spread ``y - beta x - alpha`` (the hedge through the previous bar;
`trading.domain.spread`); (5) the position lifecycle and the quant core's signal state
machine (`trading.strategy.position`).

Emits nothing while data is stale or while ``warming_up`` (replaying history). While risk is
HALTED the estimators still learn (the window keeps no holes) and spread points are published,
but no signal runs and no intent is sent; while REDUCING only exits are sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

from trading.bus import (
    DataHealth,
    Dividends,
    EtfNav,
    Fill,
    Message,
    OptionChain,
    OptionQuote,
    OrderEvent,
    OrderIntent,
    Quote,
    RiskDecision,
    RiskStatus,
    Signal,
    SpreadPoint,
)
from trading.domain.buy_write import TotalReturnIndex
from trading.domain.common import CountedDeque, HedgeMethod, finite_or_none
from trading.domain.hedge import (
    DeltaNeutralHedger,
    KalmanHedge,
    RollingOls,
    delta_neutral_hedge,
    tltw_shares_of_tlt,
)
from trading.domain.market_hours import (
    EXCHANGE_TIMEZONE,
    MarketCalendar,
    SessionBars,
    market_calendar,
)
from trading.domain.risk import TradingState
from trading.domain.spread import RollingZScore
from trading.strategy.legs import LegMark, LegNotReady, RolledCall
from trading.strategy.market import EngineConfig, MarketState
from trading.strategy.pair import BarContext
from trading.strategy.position import PairManager

if TYPE_CHECKING:
    from trading.settings import Settings, StrategySettings

STATE_VERSION = 1
TLTW_INDEX_MONEYNESS = 1.02
"""TLTW's index writes the call nearest 102% of spot: the reference for TLTW's own delta."""


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one bar close produced (all empty when no bar closed)."""

    bar_end_ts: float | None = None
    spread_point: SpreadPoint | None = None
    signals: tuple[Signal, ...] = ()
    intents: tuple[OrderIntent, ...] = ()
    skipped: str = ""


EMPTY = StepResult()


class RefusedMessage(ValueError):
    """A message refused (bad input: the text names the field) after it had closed the bar
    before it: ``closed`` is that bar's result (its spread point, signals and intents stand,
    as they would had the message been good). Callers that count and drop a bad message must
    still act on ``closed``."""

    def __init__(self, reason: ValueError, closed: StepResult) -> None:
        super().__init__(str(reason))
        self.closed = closed


_ORDER_MESSAGES = frozenset({RiskDecision, Fill, OrderEvent})
"""Messages from risk about orders, handled apart from the market's."""


class StrategyEngine:
    """See the module docstring."""

    def __init__(
        self,
        settings: StrategySettings,
        config: EngineConfig,
        calendar: MarketCalendar | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.calendar = calendar or market_calendar()
        self.session_bars = SessionBars(self.calendar, settings.bar_seconds)
        self.market = MarketState(config.underlying, config.etf)
        self.leg = self._rolled_call(config.moneyness)
        # TLTW's own call (for the delta hedge): the same leg when the preset is the replica.
        self.tltw_leg = (
            self.leg
            if abs(config.moneyness - TLTW_INDEX_MONEYNESS) < 1e-12
            else self._rolled_call(TLTW_INDEX_MONEYNESS)
        )
        self.tltw_total_return = TotalReturnIndex()
        self.hedge_method = settings.hedge_method
        self.hedge: RollingOls | KalmanHedge | DeltaNeutralHedger = self._new_hedge()
        self.zscore = RollingZScore(settings.z_window, ddof=1, min_std=settings.z_std_floor)
        self.pairs = PairManager(settings, config, self.calendar)
        self.current_bar: int | None = None
        # The last exchange time asked about and its bar: the ticks of one market step share
        # their time, so most messages skip the session lookup (bar_of is a pure function).
        self._bar_memo: tuple[float, int] = (math.nan, -1)  # -1: no bar is ever numbered so
        self.last_bar_date: date | None = None
        self.bars_closed = 0
        self.risk_state = TradingState.ACTIVE
        self.warming_up = False
        """True while replaying history: the estimators learn, no signal runs, no intent."""
        self.last_skip = "no bar yet"

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> StrategyEngine:
        values = EngineConfig.pair_values(settings.pair_spec())
        values["stale_after_s"] = settings.risk.stale_after_s
        config = EngineConfig(**(values | overrides))
        return cls(settings.strategy, config)

    def _rolled_call(self, moneyness: float) -> RolledCall:
        s = self.settings
        return RolledCall(
            moneyness,
            s.min_days_to_expiry,
            s.roll_business_days_before_expiry,
            s.roll_strike_distance,
            self.calendar,
        )

    def _new_hedge(self) -> RollingOls | KalmanHedge | DeltaNeutralHedger:
        s = self.settings
        if s.hedge_method is HedgeMethod.OLS:
            return RollingOls(s.ols_window)
        if s.hedge_method is HedgeMethod.KALMAN:
            return KalmanHedge(delta=s.kalman_delta, observation_variance=s.kalman_obs_var)
        return DeltaNeutralHedger()

    # inputs ---------------------------------------------------------------------------------

    def on_quote(self, quote: Quote) -> None:
        self.market.on_quote(quote)

    def on_option(self, option: OptionQuote) -> None:
        self.market.on_option(option)

    def on_chain(self, chain: OptionChain) -> None:
        self.market.on_chain(chain)

    def on_nav(self, nav: EtfNav) -> None:
        self.market.on_nav(nav)

    def on_dividends(self, dividends: Dividends) -> None:
        self.market.on_dividends(dividends)

    def on_health(self, health: DataHealth) -> None:
        self.market.on_health(health)

    def on_risk_status(self, status: RiskStatus) -> None:
        try:
            self.risk_state = TradingState(status.state)
        except ValueError:
            states = "/".join(TradingState)
            raise ValueError(f"risk_status.state must be {states}, got {status.state!r}") from None

    def on_decision(self, decision: RiskDecision) -> tuple[Signal, ...]:
        """Apply risk's answer to one of our pending intents (others are ignored)."""
        return self.pairs.on_decision(decision)

    def on_order_event(self, event: OrderEvent) -> tuple[Signal, ...]:
        """Risk's order event; the end of our working intent (see `PairManager`)."""
        return self.pairs.on_order_event(event)

    def on_fill(self, fill: Fill) -> tuple[Signal, ...]:
        """A fill of the fills stream; IB's settlement of the pair's call may leave it flat
        (see `PairManager.on_fill`)."""
        return self.pairs.on_fill(fill)

    def on_risk_intent(self, intent: OrderIntent) -> tuple[Signal, ...]:
        """An intent risk-management made itself (stop-loss, kill switch, flatten) that closes
        our pair: go FLAT and blocked (see `PairLifecycle.on_risk_close`)."""
        return self.pairs.on_risk_close(intent)

    _DISPATCH: ClassVar[dict[type, Any]] = {
        Quote: on_quote,
        OptionQuote: on_option,
        OptionChain: on_chain,
        EtfNav: on_nav,
        Dividends: on_dividends,
        DataHealth: on_health,
        RiskStatus: on_risk_status,
        Fill: on_fill,
    }

    def update(self, msg: Message) -> None:
        """Apply a market, health or risk-status message without closing a bar (seeding the
        latest values after a restart: their timestamps may be old)."""
        handler = self._DISPATCH.get(type(msg))
        if handler is not None:
            handler(self, msg)

    def on_message(self, msg: Message, now_wall: float | None = None) -> StepResult:
        """Close the open bar if ``msg`` is from a later bar, then apply ``msg``."""
        result = EMPTY
        ts = getattr(msg, "ts_exchange", None)
        # The memo's time again, in the open bar: `step` would close nothing (most ticks).
        if ts is not None and (ts, self.current_bar) != self._bar_memo:
            result = self.step(ts, now_wall)
        if type(msg) in _ORDER_MESSAGES:  # a set lookup: an isinstance of a union per tick cost
            if isinstance(msg, RiskDecision):
                signals = self.on_decision(msg)
            elif isinstance(msg, Fill):
                signals = self.on_fill(msg)
            else:
                signals = self.on_order_event(cast(OrderEvent, msg))
            if signals:
                result = StepResult(
                    result.bar_end_ts,
                    result.spread_point,
                    result.signals + signals,
                    result.intents,
                    result.skipped,
                )
            return result
        handler = self._DISPATCH.get(type(msg))
        if handler is not None:
            try:
                handler(self, msg)
            except ValueError as exc:
                if result.bar_end_ts is None:
                    raise
                raise RefusedMessage(exc, result) from exc
        return result

    # bars -----------------------------------------------------------------------------------

    def bar_of(self, ts_exchange: float) -> int:
        """The session-aligned bar of an exchange time (see the module docstring)."""
        memo_ts, memo_bar = self._bar_memo
        if ts_exchange == memo_ts:
            return memo_bar
        if not math.isfinite(ts_exchange):
            raise ValueError(f"ts_exchange must be finite, got {ts_exchange!r}")
        bar = self.session_bars.bar_of(ts_exchange)
        self._bar_memo = (ts_exchange, bar)
        return bar

    def step(self, ts_exchange: float, now_wall: float | None = None) -> StepResult:
        """Close the open bar when ``ts_exchange`` is past its end; the first call opens one."""
        bar = self.bar_of(ts_exchange)
        if self.current_bar is None:
            self.current_bar = bar
            return EMPTY
        if bar <= self.current_bar:
            return EMPTY
        bar_end = self.session_bars.bar_end(self.current_bar)
        self.current_bar = bar
        return self.close_bar(bar_end, now_wall)

    def close_open_bar(self, now_wall: float | None = None) -> StepResult:
        """Close the bar still open at its end (a run's last bar: no later message will);
        the next message opens a new one."""
        if self.current_bar is None:
            return EMPTY
        bar_end = self.session_bars.bar_end(self.current_bar)
        self.current_bar = None
        return self.close_bar(bar_end, now_wall)

    def close_bar(self, bar_end_ts: float, now_wall: float | None = None) -> StepResult:
        """Run the estimators and the signal on the latest prices, as of ``bar_end_ts``."""
        result = self._close_bar(bar_end_ts, now_wall)
        self.last_skip = result.skipped
        return result

    def _close_bar(self, bar_end_ts: float, now_wall: float | None) -> StepResult:
        market = self.market
        held = tuple(c.con_id for c in (self.leg.held, self.tltw_leg.held) if c is not None)
        problems = market.problems(now_wall, self.config.stale_after_s, held)
        if problems:
            return StepResult(bar_end_ts, skipped="stale: " + "; ".join(problems))
        # The bar [t - bar, t) belongs to the session it started in.
        as_of = datetime.fromtimestamp(bar_end_ts - 1e-3, UTC).astimezone(EXCHANGE_TIMEZONE).date()
        spot = market.stocks[self.config.underlying].mid
        tltw_price = market.stocks[self.config.etf].mid
        tlt_dividend = market.distribution_between(
            self.config.underlying, self.last_bar_date, as_of
        )
        tltw_dividend = market.distribution_between(self.config.etf, self.last_bar_date, as_of)
        try:
            mark = self.leg.mark(market, spot, as_of, tlt_dividend)
            tltw_mark = (
                mark
                if self.tltw_leg is self.leg
                else self.tltw_leg.mark(market, spot, as_of, tlt_dividend)
            )
        except LegNotReady as exc:
            return StepResult(bar_end_ts, skipped=f"index not ready: {exc}")
        self.last_bar_date = as_of
        self.bars_closed += 1
        tltw_tr = self.tltw_total_return.update(tltw_price, tltw_dividend)
        x = math.log(mark.level)
        y = math.log(tltw_tr)

        observation = self._spread(x, y, mark, tltw_mark, spot, tltw_price)
        if observation is None:
            return StepResult(bar_end_ts, skipped=f"warming up: {self.warmup_text()}")
        beta, alpha, spread_value, z = observation
        mean = self.zscore.last_mean
        std = self.zscore.last_std
        tlt_quote = market.stocks[self.config.underlying]
        tltw_quote = market.stocks[self.config.etf]
        call_quote = market.options.get(mark.call.con_id)
        quotes = {
            "underlying": (tlt_quote.bid, tlt_quote.ask),
            "etf": (tltw_quote.bid, tltw_quote.ask),
        }
        if call_quote is not None:
            quotes["call"] = (call_quote.bid, call_quote.ask)
        context = BarContext(
            ts=bar_end_ts,
            z=z,
            spread=spread_value,
            mean=mean,
            std=std,
            beta=beta,
            alpha=alpha,
            x=x,
            y=y,
            spot=spot,
            tltw_mid=tltw_price,
            tltw_total_return=tltw_tr,
            index_level=mark.level,
            call_mid=mark.call_mid,
            call=mark.call,
            risk_state=self.risk_state,
            warming_up=self.warming_up,
            option_mids={c: q.mid for c, q in market.options.items()},
            as_of=as_of,
            quotes=quotes,
        )
        signals, intents = self.pairs.on_bar(context)
        point = SpreadPoint(
            ts=bar_end_ts,
            index_value=mark.level,
            tltw=tltw_tr,
            beta=beta,
            alpha=alpha,
            spread=spread_value,
            mean=mean,
            std=std,
            z=z,
            entry_z=self.settings.entry_z,
            exit_z=self.settings.exit_z,
            stop_z=self.settings.stop_z,
            hedge_method=self.hedge_method.value,
            state=self.pairs.signal_state,
            call_con_id=mark.call.con_id,
            call_strike=mark.call.strike,
            call_expiry=mark.call.expiry,
        )
        return StepResult(bar_end_ts, point, signals, intents)

    def _spread(
        self,
        x: float,
        y: float,
        mark: LegMark,
        tltw_mark: LegMark,
        spot: float,
        tltw_price: float,
    ) -> tuple[float, float, float, float] | None:
        """(beta, alpha, spread, z) with the hedge through the previous bar, then learn this
        bar; None until both the hedge and the z window are ready. The spread is recorded for
        the fits (OU, cointegration, edge) as soon as the hedge gives one."""
        hedge = self.hedge
        beta, alpha = hedge.beta, hedge.alpha
        value = None if beta is None or alpha is None else y - beta * x - alpha
        z = None if value is None else self.zscore.update(value)
        if value is not None:
            self.pairs.record_spread(value, x, y)
        if isinstance(hedge, DeltaNeutralHedger):
            # TLTW's TLT shares per TLTW share from its NAV (its price carries the premium).
            nav = self.market.nav if self.market.nav is not None else tltw_price
            shares = tltw_shares_of_tlt(nav, spot, tltw_mark.call_mid)
            hedge.update(
                x,
                y,
                delta_neutral_hedge(
                    spot, mark.call_delta, mark.call_mid, tltw_price, tltw_mark.call_delta, shares
                ),
            )
        else:
            hedge.update(x, y)
        if value is None or z is None or beta is None or alpha is None:
            return None
        return beta, alpha, value, z

    def warmup_text(self) -> str:
        return f"{self.bars_closed} bars closed, z window of {self.settings.z_window} bars"

    # state ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A small summary for the heartbeat."""
        return {
            "bars": self.bars_closed,
            "signal_state": self.pairs.signal_state,
            "pair": self.pairs.status.value,
            "risk_state": self.risk_state,
            "last_skip": self.last_skip,
            "ou": {  # the fit the Kelly size needs: no fit, no entry ("Kelly size zero")
                "half_life_bars": None
                if self.pairs.ou is None
                else finite_or_none(self.pairs.ou.half_life),
                "error": self.pairs.ou_error,
                "refit_in_bars": self.pairs.bars_to_refit(),
            },
            "edge": self.pairs.edge_status(),
        }

    def windows(self) -> dict[str, CountedDeque]:
        """The estimators' windows by name: what ``to_state(windows=False)`` leaves out (one
        value appended to each a bar; with the default settings, 62,400 floats in all)."""
        out = {
            "zscore": self.zscore.values,
            "pairs.spreads": self.pairs.spreads,
            "pairs.log_index": self.pairs.log_index,
            "pairs.log_tltw": self.pairs.log_tltw,
        }
        if isinstance(self.hedge, RollingOls):
            out["hedge.x"], out["hedge.y"] = self.hedge.values
        return out

    def to_state(self, windows: bool = True) -> dict[str, Any]:
        """Everything needed to carry on after a restart (JSON types only: NaN and infinities
        are spelled "NaN", "Infinity", "-Infinity", as JSON has no number for them). Without
        ``windows``, the values of `windows()` are left out (null): whoever keeps them apart
        passes them back to `restore`."""
        state: dict[str, Any] = json_safe(
            {
                "version": STATE_VERSION,
                "settings_key": self._settings_key(),
                "current_bar": self.current_bar,
                "last_bar_date": None
                if self.last_bar_date is None
                else self.last_bar_date.isoformat(),
                "bars_closed": self.bars_closed,
                "risk_state": self.risk_state,
                "leg": self.leg.to_state(),
                "tltw_leg": None if self.tltw_leg is self.leg else self.tltw_leg.to_state(),
                "tltw_total_return": self.tltw_total_return.to_state(),
                "hedge": self.hedge.to_state(windows)
                if isinstance(self.hedge, RollingOls)
                else self.hedge.to_state(),
                "zscore": self.zscore.to_state(windows),
                "pairs": self.pairs.to_state(windows),
            }
        )
        return state

    def _settings_key(self) -> dict[str, Any]:
        """The settings the estimators' state depends on: a change discards that state."""
        s = self.settings
        return {
            "moneyness": self.config.moneyness,
            "hedge_method": s.hedge_method.value,
            "ols_window": s.ols_window,
            "kalman_delta": s.kalman_delta,
            "kalman_obs_var": s.kalman_obs_var,
            "z_window": s.z_window,
            "z_std_floor": s.z_std_floor,
            "bar_seconds": s.bar_seconds,
            "bars": "session",  # bar numbers of SessionBars (before: epoch // bar_seconds)
        }

    def restore(self, state: dict[str, Any], windows: dict[str, list[float]] | None = None) -> bool:
        """Carry on from ``to_state()``, or from ``to_state(windows=False)`` and the values of
        `windows()` kept apart (``windows``, by name). The position lifecycle is always
        restored (never re-enter what is open or pending); the estimators only when the
        settings they depend on are unchanged and every window's values are at hand. Returns
        True when the estimators were restored too."""
        state = from_json_safe(state)
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"strategy state version must be {STATE_VERSION}, got {state.get('version')!r}"
            )
        complete = _fill_windows(state, windows or {})
        self.pairs.restore(state["pairs"])
        self.risk_state = TradingState(state.get("risk_state", TradingState.ACTIVE))
        if not complete or state.get("settings_key") != self._settings_key():
            return False
        self.current_bar = state["current_bar"]
        last = state["last_bar_date"]
        self.last_bar_date = None if last is None else date.fromisoformat(last)
        self.bars_closed = state["bars_closed"]
        self.leg.restore(state["leg"])
        if state["tltw_leg"] is not None and self.tltw_leg is not self.leg:
            self.tltw_leg.restore(state["tltw_leg"])
        self.tltw_total_return = TotalReturnIndex.from_state(state["tltw_total_return"])
        hedge_state = state["hedge"]
        if isinstance(self.hedge, RollingOls):
            self.hedge = RollingOls.from_state(hedge_state)
        elif isinstance(self.hedge, KalmanHedge):
            self.hedge = KalmanHedge.from_state(hedge_state)
        else:
            self.hedge = DeltaNeutralHedger.from_state(hedge_state)
        self.zscore = RollingZScore.from_state(state["zscore"])
        return True


def _fill_windows(state: dict[str, Any], windows: dict[str, list[float]]) -> bool:
    """Put the windows' values kept apart back into a state saved without them; a window
    missing from ``windows`` is left empty. True when nothing was missing."""
    holders = [
        ("zscore", state["zscore"], "values"),
        ("pairs.spreads", state["pairs"], "spreads"),
        ("pairs.log_index", state["pairs"], "log_index"),
        ("pairs.log_tltw", state["pairs"], "log_tltw"),
    ]
    if "x" in state["hedge"]:
        holders += [("hedge.x", state["hedge"], "x"), ("hedge.y", state["hedge"], "y")]
    complete = True
    for name, holder, key in holders:
        if holder[key] is None:
            values = windows.get(name)
            complete &= values is not None
            holder[key] = [] if values is None else values
    return complete


_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def json_safe(value: Any) -> Any:
    """A copy with non-finite floats spelled as strings (see `from_json_safe`)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # Long float windows: only walk them when they hold a non-finite value.
        if value and all(type(v) is float and math.isfinite(v) for v in value):
            return list(value)
        return [json_safe(v) for v in value]
    return value


def from_json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return _NONFINITE.get(value, value)
    if isinstance(value, dict):
        return {k: from_json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(type(v) is float for v in value):
            return value
        return [from_json_safe(v) for v in value]
    return value
