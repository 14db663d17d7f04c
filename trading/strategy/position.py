"""The pair's lifecycle around the quant core's signal machine, and Kelly sizing (no I/O).

The values it keeps and decides on (the bar, the pair entered, the intent working) are in
`trading.strategy.pair`.

Lifecycle (``PairStatus``)::

    FLAT --entry signal, size > 0--> ENTERING --approved--> OPEN --exit/stop/time stop--> EXITING
      ^                                 |          (entry working)                          |
      +------rejected (blocked)---------+              rejected: back to OPEN, retried      |
      +------entry done, nothing filled (blocked)                                           |
      +------------------------------exit approved and done, nothing left-------------------+

* One pair at a time, one intent at a time: nothing new is emitted while an intent is pending
  (ENTERING, EXITING) or its orders are working. What an approved intent did is known from
  risk's order events, not assumed: when the last of its legs is done (filled, cancelled,
  rejected, lost), the pair holds what the events say filled. An entry that filled nothing
  leaves the strategy FLAT and blocked; an exit that left something (a leg cancelled at the
  close, or lost with a connection) leaves it OPEN with the rest, and the exit fires again.
* An exit or stop may go out while the entry still works (the spread came back before the
  entry filled): risk refuses it SUPERSEDED, cancels the entry's rest and flattens what the
  pair holds itself; the strategy is then FLAT and blocked, as after risk's own close.
* A rejected entry returns to FLAT *blocked*: no new entry until |z| has come back inside the
  entry band (the quant core's re-entry rule after a stop). Without it the same dislocation
  would send a fresh intent every bar for risk to reject.
* A rejected exit returns to OPEN with the signal machine back in the position; the exit signal
  fires again after a pause that doubles with each rejection in a row (1, 2, 4 ... 64 bars),
  so a refusal that persists (stale data, say) is not asked again every bar (an exit shrinks
  exposure: risk admits it even when REDUCING).
* While risk is HALTED the machine does not run (no signal, no intent); while REDUCING entries
  are suppressed and exits still go out.
* An exit closes exactly what the entry filled: the same TLTW shares and buy-write units, the
  same call contract, even if the index has rolled to another strike since.
* Roll: the pair's call follows the index's roll rule (`trading.domain.options.roll_decision`
  with the strategy's ``roll_*`` settings: the roll date, expiry, or a spot move). On the first
  bar the rule says roll, an OPEN pair is closed (an EXIT whose reason starts with "roll") and
  the signal machine goes FLAT without a block, so the next bar re-enters on the index's new
  call if |z| is still beyond the entry band. Whichever side the pair is on (a short spread is
  short the call, a long spread long it), it never holds a call into its expiry. An entry is
  not sent while the index's own call is due to roll (its roll was deferred for want of a
  quote): it would be closed on the next bar.
* An entry is refused (a signal with the reason, FLAT, blocked) when the hedge beta is not > 0
  (with OLS it can be, over a short window): there is no hedge to size the buy-write leg with.
* Settlement: IB's assignment, exercise or expiry of the pair's call (an option fill without an
  intent) leaves no buy-write to exit: FLAT and blocked, risk closes the rest; a partial one
  shrinks the pair to the contracts left and, with risk's rebalance, the TLTW kept.

Sizing: `trading.domain.kelly.spread_kelly_size` with the Ornstein-Uhlenbeck fit of the spread
over the z window (`trading.domain.mean_reversion`), a horizon of one half-life, the
Engle-Granger p-value of (log TLTW TR, log index) over the same window, the Kelly fraction and
the caps (gross notional and leverage). The fits are refreshed every ``refit_bars`` bars (they
cost milliseconds; the bar loop costs microseconds).

Edge gate (`trading.domain.edge`), in front of every entry once the legs are sized: the spread
over the z window, sampled every ``edge_sample_seconds``, must be shown to revert inside
``edge_horizon_seconds`` (half-life interval, ADF), must not drift against the entry by more
than ``edge_max_drift_bp_month``, and the entry's expected reversion over the horizon must be
``edge_cost_margin`` x the round trip's cost measured on the bar's quotes (`trading.domain.costs`:
every leg's bid/ask and IB's commissions, both ways). The tests are measured with the fits; an
entry that fails is refused (a signal naming each failed test, FLAT, blocked until |z| is back
inside the entry band); ``edge_gate=false`` measures and reports without refusing. The latest
diagnostics and the last entry's check are in the engine's status (the heartbeat's detail)
and every entry intent's ``why["edge"]``.

Attribution: the pair records the hedge (beta, alpha) in force at entry; its spread P&L is
measured with that hedge, ``entry_sign x ((y - beta_e x - alpha_e) - entry spread)`` in log
units, never with a hedge estimated later (no look-ahead).

The signal machine's clock is trading time: the number of bars closed x bar_seconds, so its
time stop (in half-lives of bars: the edge tests' half-life of the sampled spread, else the OU
fit's) does not fire over a night or a weekend, and means the same at any bar size.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from trading.bus import (
    SETTLED_TLTW_SHARES_AFTER,
    SETTLED_UNITS_AFTER,
    Fill,
    IntentPurpose,
    LegKind,
    OrderEvent,
    OrderIntent,
    RiskDecision,
    Signal,
)
from trading.domain.common import CountedDeque, finite_or_none
from trading.domain.costs import pair_round_trip_cost_usd
from trading.domain.edge import EdgeCheck, EdgeDiagnostics, EdgeLimits, check_entry, measure_edge
from trading.domain.kelly import KellyLimits, SpreadKellySize, spread_kelly_size
from trading.domain.market_hours import REGULAR_SESSION_SECONDS, MarketCalendar, market_calendar
from trading.domain.mean_reversion import (
    OrnsteinUhlenbeckFit,
    engle_granger,
    fit_ornstein_uhlenbeck,
)
from trading.domain.options import HeldOption, RollDecision, RollRule, roll_decision
from trading.domain.risk import RiskCode, TradingState
from trading.domain.signals import SignalAction, SignalBands, SignalMachine, SpreadPosition
from trading.strategy.intents import LegMids, PairLegs, pair_intent, size_legs
from trading.strategy.market import EngineConfig, parse_yyyymmdd
from trading.strategy.pair import (
    BarContext,
    OpenPair,
    WorkingIntent,
    intent_from_state,
    intent_state,
)

if TYPE_CHECKING:
    from trading.settings import StrategySettings

RISK_CLOSES = frozenset({IntentPurpose.STOP, IntentPurpose.FLATTEN, IntentPurpose.UNWIND})
"""Intent purposes risk-management sends on its own that leave the pair closed: a stop or
flatten of the whole pair, or the unwind of a legged entry."""


class PairStatus(StrEnum):
    FLAT = "FLAT"
    ENTERING = "ENTERING"
    OPEN = "OPEN"
    EXITING = "EXITING"


_EXIT_PURPOSE = {
    SignalAction.EXIT: IntentPurpose.EXIT,
    SignalAction.STOP: IntentPurpose.STOP,
    SignalAction.TIME_STOP: IntentPurpose.STOP,
}
MIN_FIT_BARS = 30
"""Fewer spread points than this give no OU fit or cointegration test (size zero)."""
MAX_RETRY_PAUSE_BARS = 64


class PairManager:
    """The lifecycle of the module docstring: signal machine, sizing, intents, decisions."""

    def __init__(
        self,
        settings: StrategySettings,
        config: EngineConfig,
        calendar: MarketCalendar | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.calendar = calendar or market_calendar()
        self.roll_rule = RollRule(
            business_days_before_expiry=settings.roll_business_days_before_expiry,
            max_spot_move_fraction=settings.roll_strike_distance,
        )
        self.bands = SignalBands(
            entry_z=settings.entry_z,
            exit_z=settings.exit_z,
            stop_z=settings.stop_z,
            min_distance_bp=settings.min_spread_bp,
            time_stop_half_lives=settings.time_stop_half_lives,
        )
        self.kelly_limits = KellyLimits(
            fraction=settings.kelly_fraction,
            max_gross_notional_usd=settings.max_gross_notional_usd,
            max_leverage=settings.max_leverage,
            max_cointegration_p_value=settings.cointegration_pvalue,
        )
        self.machine = SignalMachine(self.bands)
        self.status = PairStatus.FLAT
        self.pair: OpenPair | None = None
        self.pending: OrderIntent | None = None
        self.working: WorkingIntent | None = None
        self.exit_rejections = 0
        self.retry_bar = 0
        """No exit before this bar (a pause after a rejected exit, see the docstring)."""
        self.bars = 0
        window = settings.z_window
        self.spreads = CountedDeque(maxlen=window)
        self.log_index = CountedDeque(maxlen=window)
        self.log_tltw = CountedDeque(maxlen=window)
        self.fit_bar = -1
        self.machine_before_exit: dict[str, Any] | None = None
        self.ou: OrnsteinUhlenbeckFit | None = None
        self.ou_error = "not fitted yet"
        self.cointegration_p_value = math.nan
        self.edge_limits = edge_limits(settings)
        self.edge: EdgeDiagnostics | None = None
        self.edge_error = "not measured yet"
        self.last_edge_check: EdgeCheck | None = None

    @property
    def signal_state(self) -> str:
        return self.machine.position.value

    # estimators -----------------------------------------------------------------------------

    def record_spread(self, spread: float, x: float, y: float) -> None:
        self.spreads.append(spread)
        self.log_index.append(x)
        self.log_tltw.append(y)

    def refit(self) -> None:
        """OU fit of the spread, Engle-Granger p-value and the edge tests over the window
        (every refit_bars)."""
        self.fit_bar = self.bars
        try:
            self.edge = measure_edge(np.fromiter(self.spreads, float), self.edge_limits)
            self.edge_error = ""
        except ValueError as exc:
            self.edge, self.edge_error = None, str(exc)
        if len(self.spreads) < MIN_FIT_BARS:
            self.ou, self.ou_error = None, f"{len(self.spreads)} bars < {MIN_FIT_BARS}"
            self.cointegration_p_value = math.nan
            return
        try:
            self.ou, self.ou_error = fit_ornstein_uhlenbeck(np.fromiter(self.spreads, float)), ""
        except ValueError as exc:
            self.ou, self.ou_error = None, str(exc)
        try:
            # One ADF lag, not AIC's search: the search costs 13 s on a 40-day window of
            # one-minute bars, and the spread's residuals are close to AR(1) at this scale.
            result = engle_granger(
                np.fromiter(self.log_tltw, float),
                np.fromiter(self.log_index, float),
                max_lag=1,
                autolag=None,
            )
            self.cointegration_p_value = result.p_value
        except ValueError:
            self.cointegration_p_value = math.nan

    def _fits_due(self) -> bool:
        """Every refit_bars bars; and every bar while the last fit has no answer (too few bars
        after a start, a degenerate window), or the strategy could not size an entry for a
        whole refit period (390 bars by default) after a cold start."""
        missing = self.ou is None or not math.isfinite(self.cointegration_p_value)
        return self.fit_bar < 0 or missing or self.bars - self.fit_bar >= self.settings.refit_bars

    def bars_to_refit(self) -> int:
        """Bars until the fits are refreshed (0: at the next bar close)."""
        if self._fits_due():
            return 0
        return self.settings.refit_bars - (self.bars - self.fit_bar)

    def half_life_bars(self) -> float:
        """The OU fit's half-life over every bar (Kelly's horizon)."""
        return math.inf if self.ou is None else self.ou.half_life

    def time_stop_half_life_bars(self) -> float:
        """The half-life the time stop counts in: the edge tests' (the sampled spread, not
        biased short by quote noise as a fit on one-minute bars is: ~9 bars against a true 390)
        when they measured one, else the OU fit's."""
        edge = self.edge
        if edge is not None and math.isfinite(edge.half_life_bars) and edge.half_life_bars > 0:
            return edge.half_life_bars
        return self.half_life_bars()

    # bars -----------------------------------------------------------------------------------

    def on_bar(self, bar: BarContext) -> tuple[tuple[Signal, ...], tuple[OrderIntent, ...]]:
        self.bars += 1
        if self.pair is not None and self.pair.legs.call_con_id in bar.option_mids:
            self.pair.last_call_mid = bar.option_mids[self.pair.legs.call_con_id]
        if bar.warming_up or bar.risk_state is TradingState.HALTED:
            return (), ()
        if self.status in (PairStatus.ENTERING, PairStatus.EXITING):
            return (), ()
        if self.status is PairStatus.OPEN and self.bars < self.retry_bar:
            return (), ()  # pausing after a rejected exit
        if self.status is PairStatus.OPEN and self.pair is not None:
            roll = self._roll(self.pair.legs.call_expiry, self.pair.legs.call_strike, bar)
            if roll.roll:
                return self._roll_exit(bar, roll)
        if self._fits_due():
            self.refit()
        half_life_seconds = self.time_stop_half_life_bars() * self.settings.bar_seconds
        clock = datetime.fromtimestamp(self.bars * self.settings.bar_seconds, UTC)
        distance_bp = (bar.spread - bar.mean) * 1e4
        was = self.machine.position
        before = None if was is SpreadPosition.FLAT else self.machine.to_state()
        if was is SpreadPosition.FLAT and not math.isfinite(half_life_seconds):
            # No half-life, no time stop and no Kelly size: an entry cannot be sized.
            half_life_seconds = 1.0
        decision = self.machine.update(bar.z, distance_bp, clock, half_life_seconds)
        action = decision.action
        if action in (SignalAction.ENTER_LONG_SPREAD, SignalAction.ENTER_SHORT_SPREAD):
            return self._enter(bar, action, decision.reason)
        if action in _EXIT_PURPOSE:
            self.machine_before_exit = before
            return self._exit(bar, action, decision.reason)
        return (), ()

    def _roll(self, expiry: str, strike: float, bar: BarContext) -> RollDecision:
        """The roll rule for a call of ``expiry`` (YYYYMMDD) and ``strike`` on this bar."""
        held = HeldOption(parse_yyyymmdd("call_expiry", expiry), strike)
        return roll_decision(held, bar.spot, bar.as_of, self.roll_rule, self.calendar)

    def _roll_exit(
        self, bar: BarContext, roll: RollDecision
    ) -> tuple[tuple[Signal, ...], tuple[OrderIntent, ...]]:
        """Close the pair because its call is due to roll; the machine goes FLAT unblocked, so
        the entry rule may re-open the pair on the index's new call from the next bar."""
        legs = self.pair.legs if self.pair is not None else None
        what = "" if legs is None else f"call {legs.call_expiry} {legs.call_strike:g}: "
        self.machine_before_exit = self.machine.to_state()
        self.machine.flatten()
        reason = f"roll ({roll.reason.value}): {what}{roll.message}"
        return self._exit(bar, SignalAction.EXIT, reason)

    def _signal(self, bar: BarContext, action: SignalAction, reason: str) -> Signal:
        return Signal(
            ts=bar.ts,
            action=action,
            state=self.machine.position.value,
            z=bar.z,
            spread=bar.spread,
            reason=reason,
        )

    def _note(self, ts: float, reason: str) -> tuple[Signal, ...]:
        """A signal that changes no position: what happened to the pair outside a bar."""
        state = self.machine.position.value
        return (Signal(ts, SignalAction.NONE, state, z=0.0, spread=0.0, reason=reason),)

    def _drop_pair(self) -> None:
        """The pair is gone (rejected entry, risk's close, IB's settlement of every call):
        FLAT, blocked until |z| is back inside the entry band."""
        self.status, self.pair, self.pending, self.working = PairStatus.FLAT, None, None, None
        self.machine.flatten()
        self.machine.blocked = True

    def _enter(
        self, bar: BarContext, action: SignalAction, reason: str
    ) -> tuple[tuple[Signal, ...], tuple[OrderIntent, ...]]:
        refused = ""
        if bar.risk_state is TradingState.REDUCING:
            refused = "risk is REDUCING: no new exposure"
        size = spread_kelly_size(
            self.ou,
            bar.spread,
            self.half_life_bars(),
            self.settings.capital_usd,
            bar.beta,
            self.cointegration_p_value,
            self.kelly_limits,
        )
        direction = (
            SpreadPosition.LONG_SPREAD
            if action is SignalAction.ENTER_LONG_SPREAD
            else SpreadPosition.SHORT_SPREAD
        )
        block = True
        if not refused:
            roll = self._roll(bar.call.expiry, bar.call.strike, bar)
            if roll.roll:
                # The index's roll was deferred (no quote for the new call yet): entering on the
                # old call would be closed at the next bar. Not blocked: retried next bar.
                refused, block = f"the index's call is due to roll: {roll.message}", False
        if not refused and not (math.isfinite(bar.beta) and bar.beta > 0):
            # The pair is TLTW against beta buy-writes on the other side: with beta <= 0 both
            # legs would be on the same side (no hedge at all), and the legs cannot be sized.
            refused = f"hedge beta {bar.beta!r} is not > 0: the pair has no hedge"
        if not refused and size.gross_notional_usd <= 0:
            refused = f"Kelly size zero: {size.reason or self.ou_error}"
        if not refused and (size.tltw_notional_usd > 0) != (
            direction is SpreadPosition.LONG_SPREAD
        ):
            refused = (
                f"the OU mean ({self.ou.mu if self.ou else math.nan:.6f}) is on the other side "
                f"of the spread ({bar.spread:.6f}) from the z-score's mean"
            )
        legs = None
        if not refused:
            try:
                legs = size_legs(
                    direction,
                    size.gross_notional_usd,
                    bar.beta,
                    bar.tltw_mid,
                    bar.spot,
                    bar.call_mid,
                    bar.call.con_id,
                    bar.call.expiry,
                    bar.call.strike,
                )
            except ValueError as exc:
                # Raised out of the bar close, the error would drop the bar (its spread point
                # lost) with the signal machine left in a position no pair stands behind.
                refused = f"cannot size the legs: {exc}"
        if legs is not None and (legs.tltw_shares <= 0 or legs.buy_write_units <= 0):
            refused = (
                f"size rounds to {legs.tltw_shares} TLTW shares and "
                f"{legs.buy_write_units} buy-write units"
            )
        check = None
        if not refused and legs is not None:
            check = self._edge_check(bar, legs, direction is SpreadPosition.LONG_SPREAD)
            self.last_edge_check = check
            if not check.passed and self.settings.edge_gate:
                refused = check.reason
        if refused or legs is None:
            # Back to FLAT, blocked until |z| is inside the entry band: no entry every bar.
            self.machine.flatten()
            self.machine.blocked = block
            return (self._signal(bar, SignalAction.NONE, f"{reason}; not entered: {refused}"),), ()
        intent = pair_intent(
            pair=self.config,
            purpose=IntentPurpose.ENTRY,
            action=action,
            legs=legs,
            opening=True,
            bar_end_ts=bar.ts,
            mids=LegMids(tlt=bar.spot, tltw=bar.tltw_mid, call=bar.call_mid),
            offset_bp=self.settings.order_price_offset_bp,
            why=self._why(bar, reason, size, check),
        )
        self.pair = OpenPair(
            legs=legs,
            entry_intent_id=intent.intent_id,
            entry_ts=bar.ts,
            entry_z=bar.z,
            entry_spread=bar.spread,
            entry_beta=bar.beta,
            entry_alpha=bar.alpha,
            entry_tltw_mid=bar.tltw_mid,
            entry_unit_mid=100 * bar.spot - bar.call_mid,
            last_call_mid=bar.call_mid,
        )
        self.pending = intent
        self.status = PairStatus.ENTERING
        return (self._signal(bar, action, reason),), (intent,)

    def _exit(
        self, bar: BarContext, action: SignalAction, reason: str
    ) -> tuple[tuple[Signal, ...], tuple[OrderIntent, ...]]:
        pair = self.pair
        if self.status is not PairStatus.OPEN or pair is None:
            # The machine thought it held a position the book does not: just record it.
            return (self._signal(bar, action, f"{reason} (no open pair)"),), ()
        call_mid = bar.option_mids.get(pair.legs.call_con_id, pair.last_call_mid)
        why = {
            "reason": reason,
            "z": bar.z,
            "spread": bar.spread,
            "mean": bar.mean,
            "std": bar.std,
            "entry_z": self.bands.entry_z,
            "exit_z": self.bands.exit_z,
            "stop_z": self.bands.stop_z,
            "beta_now": bar.beta,
            "entry_beta": pair.entry_beta,
            "entry_intent_id": pair.entry_intent_id,
            "spread_pnl_bp_entry_hedge": pair.spread_pnl_log(bar.x, bar.y) * 1e4,
        }
        intent = pair_intent(
            pair=self.config,
            purpose=_EXIT_PURPOSE[action],
            action=action,
            legs=pair.legs,
            opening=False,
            bar_end_ts=bar.ts,
            mids=LegMids(tlt=bar.spot, tltw=bar.tltw_mid, call=call_mid),
            offset_bp=self.settings.order_price_offset_bp,
            why=why,
        )
        self.pending = intent
        self.status = PairStatus.EXITING
        return (self._signal(bar, action, reason),), (intent,)

    def _edge_check(self, bar: BarContext, legs: PairLegs, long_spread: bool) -> EdgeCheck:
        """The edge gate on this entry: its round trip's cost from the bar's quotes, in bp of
        the TLTW leg's notional."""
        try:
            cost_usd = pair_round_trip_cost_usd(
                legs.tltw_shares,
                legs.buy_write_units,
                bar.quotes["etf"],
                bar.quotes["underlying"],
                bar.quotes["call"],
            )
        except (KeyError, ValueError) as exc:
            return EdgeCheck(False, math.nan, math.nan, f"edge: no cost for the round trip ({exc})")
        cost_bp = cost_usd / (legs.tltw_shares * bar.tltw_mid) * 1e4
        return check_entry(self.edge, bar.spread - bar.mean, long_spread, cost_bp, self.edge_limits)

    def edge_status(self) -> dict[str, Any]:
        """The latest edge diagnostics and the last entry's check (None for NaN), for the
        heartbeat and the dashboard."""
        out: dict[str, Any] = (
            {"verdict": "not measured", "failures": [self.edge_error]}
            if self.edge is None
            else self.edge.as_dict()
        )
        check = self.last_edge_check
        if check is not None:
            out["last_entry"] = {
                "passed": check.passed,
                "expected_profit_bp": check.expected_profit_bp,
                "cost_bp": check.cost_bp,
                "reason": check.reason,
            }
        out["gate"] = self.settings.edge_gate
        status: dict[str, Any] = finite_or_none(out)
        return status

    def _why(
        self, bar: BarContext, reason: str, size: SpreadKellySize, check: EdgeCheck | None
    ) -> dict[str, Any]:
        ou = self.ou
        edge = self.edge_status()
        if check is not None:
            edge["expected_profit_bp"] = check.expected_profit_bp
            edge["cost_bp"] = check.cost_bp
        return {
            "edge": finite_or_none(edge),
            "reason": reason,
            "z": bar.z,
            "spread": bar.spread,
            "mean": bar.mean,
            "std": bar.std,
            "distance_bp": (bar.spread - bar.mean) * 1e4,
            "entry_z": self.bands.entry_z,
            "exit_z": self.bands.exit_z,
            "stop_z": self.bands.stop_z,
            "beta": bar.beta,
            "alpha": bar.alpha,
            "hedge_method": self.settings.hedge_method.value,
            "index_level": bar.index_level,
            "tltw_total_return": bar.tltw_total_return,
            "tltw_mid": bar.tltw_mid,
            "tlt_mid": bar.spot,
            "call_mid": bar.call_mid,
            "kelly": {
                "fraction": self.kelly_limits.fraction,
                "full_kelly": size.full_kelly,
                "applied_fraction_of_equity": size.applied_fraction_of_equity,
                "gross_notional_usd": size.gross_notional_usd,
                "leverage": size.leverage,
                "expected_change": size.expected_change,
                "change_variance": size.change_variance,
                "horizon_bars": size.horizon,
                "capital_usd": size.equity_usd,
                "cointegration_p_value": size.cointegration_p_value,
                "capped_by": size.capped_by,
                "ou_half_life_bars": None if ou is None else ou.half_life,
                "ou_mean": None if ou is None else ou.mu,
            },
        }

    # risk's answers -------------------------------------------------------------------------

    def on_decision(self, decision: RiskDecision) -> tuple[Signal, ...]:
        pending = self.pending
        if pending is None or decision.intent_id != pending.intent_id:
            return ()
        self.pending = None
        entering = self.status is PairStatus.ENTERING
        if decision.approved:
            if entering:
                self.status = PairStatus.OPEN
            else:
                self.exit_rejections = 0
            self.working = WorkingIntent(pending.intent_id, pending.purpose, len(pending.legs))
            return ()
        reasons = "; ".join(f"{r.code}: {r.message}" for r in decision.reasons) or "no reason given"
        if entering:
            self._drop_pair()
            note = (
                f"entry {pending.intent_id} rejected ({reasons}): flat, blocked until |z| < entry"
            )
        elif any(r.code == RiskCode.SUPERSEDED for r in decision.reasons):
            self._drop_pair()
            note = (
                f"exit {pending.intent_id} superseded ({reasons}): risk closes the pair; flat, "
                f"blocked until |z| < entry"
            )
        else:
            self.exit_rejections += 1
            pause = min(2 ** (self.exit_rejections - 1), MAX_RETRY_PAUSE_BARS)
            self.retry_bar = self.bars + pause
            self._reopen()
            note = (
                f"exit {pending.intent_id} rejected ({reasons}): still open, exit retried in "
                f"{pause} bar{'s' if pause > 1 else ''}"
            )
        return self._note(decision.ts, note)

    def _reopen(self) -> None:
        """Still holding after an exit that did not go through: the machine back in the
        position, so the exit signal fires again."""
        self.status = PairStatus.OPEN
        if self.machine_before_exit is not None:
            last_time = self.machine.last_time
            self.machine = SignalMachine.from_state(self.machine_before_exit, self.bands)
            self.machine.last_time = last_time

    def on_order_event(self, event: OrderEvent) -> tuple[Signal, ...]:
        """Risk's order events for our working intent; when its last leg is done, the pair
        holds what they say filled (see the module docstring)."""
        working = self.working
        if working is None or event.intent_id != working.intent_id:
            return ()
        working.events[event.leg] = event
        if not working.done:
            return ()
        self.working = None
        pair = self.pair
        if pair is None:
            return ()
        units = working.filled(str(LegKind.BUY_WRITE))
        shares = working.filled(str(LegKind.STOCK))
        if working.purpose is IntentPurpose.ENTRY:
            if units == 0 and shares == 0:
                self._drop_pair()
                return self._note(
                    event.ts,
                    f"entry {working.intent_id} done with nothing filled ({working.statuses()}): "
                    f"flat, blocked until |z| < entry",
                )
            pair.legs = dataclasses.replace(pair.legs, buy_write_units=units, tltw_shares=shares)
            return ()
        left_units = max(pair.legs.buy_write_units - units, 0)
        left_shares = max(pair.legs.tltw_shares - shares, 0)
        if left_units == 0 and left_shares == 0:
            self.status, self.pair = PairStatus.FLAT, None
            return ()
        pair.legs = dataclasses.replace(
            pair.legs, buy_write_units=left_units, tltw_shares=left_shares
        )
        self._reopen()
        return self._note(
            event.ts,
            f"exit {working.intent_id} done with {left_units} buy-write units and "
            f"{left_shares} TLTW shares left ({working.statuses()}): still open, exit retried",
        )

    def on_risk_close(self, intent: OrderIntent) -> tuple[Signal, ...]:
        """Risk closes our pair by itself (pair stop-loss, z-stop, daily loss, kill switch,
        operator flatten): the pair is gone, so the strategy is FLAT and blocked like after a
        stop, and never later sends an exit for a position that no longer exists (it would open
        the opposite one). Intents of other pairs and our own intents are ignored.

        Risk's rebalance after IB settled part of the pair's calls (its `why` carries the
        contracts left, `SETTLED_UNITS_AFTER` > 0, and the TLTW shares kept) leaves the pair
        open, smaller: the exit then closes what the pair still holds (a larger one is refused
        EXCEEDS_HOLDINGS). The figures are absolute, so a rebalance risk sends again after a
        refusal changes nothing more."""
        if intent.pair_id != self.config.pair_id or intent.purpose not in RISK_CLOSES:
            return ()
        own = intent.intent_id.startswith(f"{self.config.pair_id}-")
        if own and ":" not in intent.intent_id:
            return ()  # the strategy's own exit or stop (risk's repairs add ":unwind")
        if self.status is PairStatus.FLAT and self.pending is None:
            return ()
        units_left = int(intent.why.get(SETTLED_UNITS_AFTER, 0) or 0)
        if units_left > 0 and self.pair is not None and self.status is not PairStatus.ENTERING:
            return self._shrink_after_settlement(intent, units_left)
        was = self.status
        self._drop_pair()
        return self._note(
            intent.ts,
            f"risk closed the pair ({intent.purpose.value} {intent.intent_id}) while "
            f"{was.value}: flat, blocked until |z| < entry",
        )

    def _shrink_after_settlement(self, intent: OrderIntent, units_left: int) -> tuple[Signal, ...]:
        """The pair after risk's rebalance of a partial settlement (see `on_risk_close`)."""
        pair = self.pair
        assert pair is not None
        before = pair.legs
        tltw_kept = intent.why.get(SETTLED_TLTW_SHARES_AFTER, before.tltw_shares)
        pair.legs = dataclasses.replace(
            before,
            buy_write_units=min(units_left, before.buy_write_units),
            tltw_shares=min(round(tltw_kept), before.tltw_shares),
        )
        return self._note(
            intent.ts,
            f"risk rebalanced the pair after IB's settlement ({intent.intent_id}): "
            f"{before.buy_write_units} -> {pair.legs.buy_write_units} buy-write units, "
            f"{before.tltw_shares} -> {pair.legs.tltw_shares} TLTW shares, still "
            f"{self.status.value}",
        )

    def on_fill(self, fill: Fill) -> tuple[Signal, ...]:
        """IB's settlement of the pair's call (an option execution without an intent that
        reduces it: assignment, exercise or expiry); the pair's own fills are counted from
        risk's order events (`on_order_event`).

        A settlement of every contract leaves no buy-write to exit: the strategy goes FLAT and
        blocked (risk closes what is left), so it never sends an exit risk refuses
        EXCEEDS_HOLDINGS. A partial one keeps the pair open with the units left (its TLTW is
        cut by risk's rebalance, see `on_risk_close`).
        """
        pair = self.pair
        if pair is None:
            return ()
        if fill.con_id == self.config.tltw_con_id:
            return ()
        if fill.intent_id or fill.sec_type != "OPT" or fill.con_id != pair.legs.call_con_id:
            return ()
        # A long spread sold buy-writes (long the call): IB settles it with a SELL; a short
        # spread bought them (short the call): with a BUY. The other side is not a settlement.
        long_call = pair.legs.direction is SpreadPosition.LONG_SPREAD
        if (str(fill.side) == "SELL") != long_call:
            return ()
        before = pair.legs.buy_write_units
        left = max(before - round(fill.quantity), 0)
        what = f"IB settled {fill.quantity:g} of the pair's call {fill.local_symbol or fill.con_id}"
        if left > 0:
            pair.legs = dataclasses.replace(pair.legs, buy_write_units=left)
            reason = f"{what}: {before} -> {left} buy-write units, still {self.status.value}"
        else:
            was = self.status
            self._drop_pair()
            reason = (
                f"{what} while {was.value}: no buy-write left to exit, flat, blocked until "
                f"|z| < entry (risk closes what is left)"
            )
        return self._note(fill.ts, reason)

    # state ----------------------------------------------------------------------------------

    def to_state(self, values: bool = True) -> dict[str, Any]:
        """The lifecycle and the fit windows; without ``values`` the windows' values are left
        out (a writer that keeps them apart, see `trading.domain.common.CountedDeque`)."""
        return {
            "status": self.status.value,
            "pair": None if self.pair is None else self.pair.to_state(),
            "pending": None if self.pending is None else intent_state(self.pending),
            "working": None if self.working is None else self.working.to_state(),
            "exit_rejections": self.exit_rejections,
            "retry_bar": self.retry_bar,
            "machine": self.machine.to_state(),
            "machine_before_exit": self.machine_before_exit,
            "bars": self.bars,
            "spreads": list(self.spreads) if values else None,
            "log_index": list(self.log_index) if values else None,
            "log_tltw": list(self.log_tltw) if values else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.status = PairStatus(state["status"])
        self.pair = None if state["pair"] is None else OpenPair.from_state(state["pair"])
        self.pending = None if state["pending"] is None else intent_from_state(state["pending"])
        working = state.get("working")
        self.working = None if working is None else WorkingIntent.from_state(working)
        self.exit_rejections = int(state.get("exit_rejections", 0))
        self.retry_bar = int(state.get("retry_bar", 0))
        self.machine = SignalMachine.from_state(state["machine"], self.bands)
        self.machine_before_exit = state.get("machine_before_exit")
        self.bars = int(state["bars"])
        self.spreads.extend(float(v) for v in state["spreads"])
        self.log_index.extend(float(v) for v in state["log_index"])
        self.log_tltw.extend(float(v) for v in state["log_tltw"])
        self.fit_bar = -1


def edge_limits(settings: StrategySettings) -> EdgeLimits:
    """The edge tests' thresholds in bars of the strategy (a bar is at most a session)."""
    bar = min(settings.bar_seconds, REGULAR_SESSION_SECONDS)
    return EdgeLimits(
        sample_bars=max(1, round(settings.edge_sample_seconds / bar)),
        horizon_bars=settings.edge_horizon_seconds / bar,
        bars_per_session=REGULAR_SESSION_SECONDS / bar,
        confidence=settings.edge_confidence,
        max_adf_p_value=settings.edge_max_adf_pvalue,
        max_drift_bp_month=settings.edge_max_drift_bp_month,
        cost_margin=settings.edge_cost_margin,
    )
