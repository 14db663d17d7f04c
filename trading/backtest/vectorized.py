"""Research mode: the strategy over whole arrays of one-minute bars, with numpy (no bar loop).

The live backtest (`trading.backtest.replay`) drives the strategy and risk engines message by
message; this module computes the same quantities over whole arrays, for sweeping parameters
over years of bars in milliseconds. Every formula is the quant core's vectorized reference:

* total-return TLTW (`trading.domain.buy_write.total_return_vec`) and the buy-write index
  chained through rolls (`buy_write_index_vec`), both on mids, (bid + ask) / 2;
* x = log index, y = log TLTW total return; the hedge after each bar: delta-neutral (the
  elasticity ratio of `trading.domain.hedge.delta_neutral_hedge`, array form; alpha re-anchored
  as `DeltaNeutralHedger` does, as an accumulate), rolling OLS (`rolling_ols_vec`) or Kalman
  (`kalman_hedge_vec`: a recursion with a Python loop per bar, so not at this module's speed);
* spread_t = y_t - beta_{t-1} x_t - alpha_{t-1} (the hedge through the previous bar), its
  rolling z against the previous ``z_window`` spreads (`rolling_zscore_mean_vec`, ddof 1, the floor
  ``z_std_floor`` under the std) and distance_bp = (spread_t - mean of that window) x 10,000;
* the signal state machine of `trading.domain.signals` (same bands, same order of rules, the
  re-entry block after a stop) as a loop over *events*: ``next_true`` arrays give, from any bar,
  the next bar where an entry, a stop, an exit or an unblock holds, and the loop jumps from event
  to event (a few hundred a year), never from bar to bar;
* positions forward-filled from the events, P&L at mids with bid/ask and commissions charged;
* the metrics of `trading.backtest.metrics` (its own Sharpe, Sortino and R-squared functions;
  the daily returns and drawdown by the same conventions, over arrays).

Conventions (per bar t, ``position`` after the bar's decision: +1 long spread = long TLTW,
short buy-write; -1 short spread):

* size at entry: `trading.strategy.intents.size_legs` of ``gross_notional_usd`` with the beta
  the spread was measured with (whole TLTW shares and buy-write units, one unit = 100 TLT short
  one call); a size that rounds to zero refuses the entry and blocks re-entry until |z| is back
  inside the entry band, as the live lifecycle does;
* fills on the signal bar's quotes at the far touch: TLTW at ask/bid, TLT at ask/bid, the call
  at bid/ask (sold when a unit is bought); commissions by IB's fixed schedule
  (`trading.domain.costs.CommissionSchedule`, ibsim's rates), each leg its own order;
* a position is closed on the bar its call rolls (an EXIT that does not block re-entry), as
  the live lifecycle does; with ``exit_on_roll`` False it rolls its call with the index instead
  (buys back the held call, writes the new one: both half spreads and two option commissions
  per unit);
* mid P&L of bar t = q_tltw (tltw_mid_t - tltw_mid_{t-1} + distribution_t)
  + q_units 100 ((S_t - S_{t-1}) - (C_held,t - C_after_roll,t-1)), quantities held into bar t;
* equity_t = capital + cumsum(mid P&L) - cumsum(costs); costs = the half spread crossed and
  commissions.

Differences from the live path, by design: no risk gate (no pair stop-loss, no notional or
Greek limits, no stale-data refusals), no resting limits (every order fills on its bar at the
far touch; live limits are mid +/- ``order_price_offset_bp`` and may rest), a fixed gross
notional instead of the Kelly size (so no "Kelly size zero" refusals), a constant half-life for
the time stop (None: no time stop; live refits an OU half-life every ``refit_bars``), no
entry suppression while the index's roll is deferred (the arrays hold rolls as they happened),
and TLTW distributions are credited to a TLTW position (live marks only prices).

Entry point::

    python -m trading.backtest.vectorized --seed 1 --start 2026-06-01 --end 2026-10-30 \\
        --premium-bp 50 --preset replica --set strategy.z_window=1560
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from trading.backtest.fills import OPTION_MULTIPLIER, SHARES_PER_UNIT, sim_commissions
from trading.backtest.metrics import (
    Metrics,
    RunTotals,
    exchange_date,
    r_squared,
    summarize,
)
from trading.backtest.research_bars import ResearchBars, bars_from_sim, first_bad
from trading.domain.buy_write import buy_write_index_vec, total_return_vec
from trading.domain.common import HedgeMethod
from trading.domain.costs import CommissionSchedule
from trading.domain.hedge import kalman_hedge_vec, rolling_ols_vec
from trading.domain.signals import SignalAction, SignalBands, SpreadPosition
from trading.domain.spread import rolling_zscore_mean_vec
from trading.settings import Settings
from trading.strategy.intents import size_legs

__all__ = [
    "PairPnl",
    "ResearchConfig",
    "ResearchEvent",
    "ResearchResult",
    "delta_neutral_log_beta_vec",
    "main",
    "next_true",
    "pair_pnl_vec",
    "research_backtest",
    "signal_positions",
]

MIN_EXPOSURE_FRACTION = 0.05
"""`trading.domain.hedge.delta_neutral_hedge`'s default guard (1 - delta below it: no beta)."""


# ---------------------------------------------------------------------------------------------
# Configuration (the inputs, `ResearchBars`, are in `trading.backtest.research_bars`)


@dataclass(frozen=True, slots=True)
class ResearchConfig:
    """The strategy's parameters for a research run (see `from_settings` for the mapping).

    ``half_life_bars``: the spread's half-life for the time stop (``bands.time_stop_half_lives``
    of them); None disables the time stop. ``exit_on_roll``: close a position on the bar its
    call rolls, as the live lifecycle does (the next bar may re-enter on the new call); False
    rolls the position's call with the index instead (both half spreads and commissions paid).
    ``gross_notional_usd``: the pair's size at entry.
    """

    hedge_method: HedgeMethod = HedgeMethod.DELTA
    ols_window: int = 7_800
    kalman_delta: float = 1e-14
    kalman_observation_variance: float = 1e-6
    z_window: int = 15_600
    z_std_floor: float = 1e-4
    bands: SignalBands = field(default_factory=SignalBands)
    half_life_bars: float | None = None
    exit_on_roll: bool = True
    gross_notional_usd: float = 100_000.0
    capital_usd: float = 100_000.0
    commissions: CommissionSchedule = field(default_factory=sim_commissions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hedge_method", HedgeMethod(self.hedge_method))
        for name in ("ols_window", "z_window"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 2):
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
        for name in ("z_std_floor", "gross_notional_usd", "capital_usd"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        if not (math.isfinite(self.kalman_delta) and 0 < self.kalman_delta < 1):
            raise ValueError(f"kalman_delta must be in (0, 1), got {self.kalman_delta!r}")
        if not (
            math.isfinite(self.kalman_observation_variance) and self.kalman_observation_variance > 0
        ):
            raise ValueError(
                "kalman_observation_variance must be finite and > 0, got "
                f"{self.kalman_observation_variance!r}"
            )
        if self.half_life_bars is not None and not (
            math.isfinite(self.half_life_bars) and self.half_life_bars > 0
        ):
            raise ValueError(f"half_life_bars must be finite and > 0, got {self.half_life_bars!r}")

    @classmethod
    def from_settings(
        cls, settings: Settings, half_life_bars: float | None = None
    ) -> ResearchConfig:
        """The live strategy's settings; the size is ``max_gross_notional_usd`` (the Kelly
        size's cap) and the time stop off unless ``half_life_bars`` is given."""
        s = settings.strategy
        return cls(
            hedge_method=s.hedge_method,
            ols_window=s.ols_window,
            kalman_delta=s.kalman_delta,
            kalman_observation_variance=s.kalman_obs_var,
            z_window=s.z_window,
            z_std_floor=s.z_std_floor,
            bands=SignalBands(
                entry_z=s.entry_z,
                exit_z=s.exit_z,
                stop_z=s.stop_z,
                min_distance_bp=s.min_spread_bp,
                time_stop_half_lives=s.time_stop_half_lives,
            ),
            half_life_bars=half_life_bars,
            gross_notional_usd=s.max_gross_notional_usd,
            capital_usd=s.capital_usd,
        )


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class ResearchEvent:
    """One trade of the research run: the bar, its close, what the machine did and the signed
    quantities held after it (TLTW shares, buy-write units; 0 after an exit)."""

    bar: int
    ts: float
    action: SignalAction
    z: float
    tltw_shares: int
    buy_write_units: int
    rolled: bool = False
    """An EXIT because the position's call rolled (``ResearchConfig.exit_on_roll``)."""


@dataclass(frozen=True, slots=True)
class ResearchResult:
    """Arrays per bar (read-only) and the trades. NaN where a value is not defined yet (hedge or
    z window not ready). ``position``: +1 long spread, -1 short, 0 flat, after each bar."""

    ts: np.ndarray
    index_level: np.ndarray
    tltw_total_return: np.ndarray
    x: np.ndarray
    y: np.ndarray
    beta: np.ndarray
    """The hedge the spread of each bar was measured with (estimated through the bar before)."""
    alpha: np.ndarray
    spread: np.ndarray
    mean: np.ndarray
    z: np.ndarray
    distance_bp: np.ndarray
    position: np.ndarray
    tltw_shares: np.ndarray
    buy_write_units: np.ndarray
    pnl_usd: np.ndarray
    """Mid-to-mid P&L of each bar on the quantities held into it (distributions included)."""
    costs_usd: np.ndarray
    """Half spreads crossed and commissions paid on each bar (trades and rolls)."""
    equity_usd: np.ndarray
    events: tuple[ResearchEvent, ...]
    refused_entries: tuple[int, ...]
    """Bars where an entry signal sized to zero (re-entry then blocked)."""
    metrics: Metrics


# ---------------------------------------------------------------------------------------------
# Building blocks


def next_true(mask: np.ndarray) -> np.ndarray:
    """For each bar t, the first bar >= t where ``mask`` holds (len(mask) when none), O(n):
    a reversed running minimum of the indices where it holds."""
    size = mask.shape[0]
    index = np.where(mask, np.arange(size), size)
    return np.minimum.accumulate(index[::-1])[::-1]


def delta_neutral_log_beta_vec(
    tlt_price,
    call_delta,
    call_price,
    tltw_price,
    tltw_call_delta,
    tlt_shares_per_tltw_share,
    min_exposure_fraction: float = MIN_EXPOSURE_FRACTION,
) -> np.ndarray:
    """`trading.domain.hedge.delta_neutral_hedge`'s ``log_beta`` over arrays, NaN where it
    is guarded (either 1 - delta below ``min_exposure_fraction``). The same operations in the
    same order as the scalar function, so the values are bit for bit its own:

        log_beta = [h (1 - tltw_call_delta) S / tltw_price] / [(1 - call_delta) S / (S - C)]
    """
    buy_write_exposure = 1.0 - call_delta
    tltw_exposure = tlt_shares_per_tltw_share * (1.0 - tltw_call_delta)
    guarded = (buy_write_exposure < min_exposure_fraction) | (
        1.0 - tltw_call_delta < min_exposure_fraction
    )
    elasticity_tltw = tltw_exposure * tlt_price / tltw_price
    elasticity_buy_write = buy_write_exposure * tlt_price / (tlt_price - call_price)
    return np.where(guarded, np.nan, elasticity_tltw / elasticity_buy_write)


def _forward_fill(values: np.ndarray) -> np.ndarray:
    """NaN replaced by the last finite value before it (NaN before the first)."""
    index = np.where(np.isfinite(values), np.arange(values.shape[0]), 0)
    np.maximum.accumulate(index, out=index)
    filled = values[index]
    first = np.flatnonzero(np.isfinite(values))
    if first.size:
        filled[: first[0]] = np.nan
    return filled


def _delta_neutral_after(x: np.ndarray, y: np.ndarray, log_beta: np.ndarray):
    """`DeltaNeutralHedger` after each bar: beta = the last unguarded log beta; alpha set to
    y - beta x on the first, then alpha -= (beta_new - beta_old) x on each unguarded bar
    (``np.subtract.accumulate``: the same subtractions in the same order)."""
    size = x.shape[0]
    beta = _forward_fill(log_beta)
    alpha = np.full(size, np.nan)
    valid = np.flatnonzero(np.isfinite(log_beta))
    if valid.size == 0:
        return beta, alpha
    first = int(valid[0])
    terms = np.zeros(size - first)
    terms[0] = y[first] - beta[first] * x[first]
    later = np.isfinite(log_beta[first + 1 :])
    change = (log_beta[first + 1 :] - beta[first : size - 1]) * x[first + 1 :]
    terms[1:] = np.where(later, change, 0.0)
    alpha[first:] = np.subtract.accumulate(terms)
    return beta, alpha


def _hedge_after(bars: ResearchBars, config: ResearchConfig, x, y, spot, tltw_mid, call_after):
    method = config.hedge_method
    if method is HedgeMethod.OLS:
        return rolling_ols_vec(x, y, config.ols_window)
    if method is HedgeMethod.KALMAN:
        kalman = kalman_hedge_vec(
            x, y, delta=config.kalman_delta, observation_variance=config.kalman_observation_variance
        )
        return kalman["beta"], kalman["alpha"]
    call_mid, call_delta = call_after
    if bars.tltw_call_bid is None:
        tltw_call_mid, tltw_call_delta = call_mid, call_delta
    else:
        tltw_call_mid = 0.5 * (bars.tltw_call_bid + bars.tltw_call_ask)
        tltw_call_delta = bars.tltw_call_delta
    # tltw_shares_of_tlt from the NAV: TLTW's price carries the premium the spread measures.
    shares = bars.tltw_nav / (spot - tltw_call_mid)
    log_beta = delta_neutral_log_beta_vec(
        spot, call_delta, call_mid, tltw_mid, tltw_call_delta, shares
    )
    return _delta_neutral_after(x, y, log_beta)


def signal_positions(
    z: np.ndarray,
    distance_bp: np.ndarray,
    bands: SignalBands,
    half_life_bars: float | None = None,
    accept_entry: Callable[[int, SpreadPosition], bool] | None = None,
    roll_bars: np.ndarray | None = None,
) -> tuple[np.ndarray, list[tuple[int, SignalAction, bool]], list[int]]:
    """`trading.domain.signals.SignalMachine` over arrays (NaN z: no signal on that bar).

    Returns (position after each bar: +1 long spread, -1 short, 0 flat; the events as (bar,
    action, closed by a roll); the bars of refused entries). ``accept_entry(bar, direction)``
    may refuse an entry (the live lifecycle's zero size): the machine is then flat and blocked.
    ``roll_bars`` (a mask): the live lifecycle's roll exit, checked before the machine: an open
    position is closed on a bar where its call rolls (an EXIT, not blocked), so the next bar
    may re-enter on the new call.

    Rules in the machine's order: FLAT and blocked: unblock when |z| < entry (no entry on that
    bar). FLAT: enter when entry <= |z| < stop and |distance_bp| >= min_distance_bp, short the
    spread when z > 0. In a position, with against = -z long, z short: STOP at against >= stop
    (blocked), EXIT at against <= exit, TIME_STOP after time_stop_half_lives x half_life_bars
    bars held (blocked); the first of them, ties in that order.
    """
    size = z.shape[0]
    magnitude = np.abs(z)
    enter = next_true(
        (magnitude >= bands.entry_z)
        & (magnitude < bands.stop_z)
        & (np.abs(distance_bp) >= bands.min_distance_bp)
    )
    unblock = next_true(magnitude < bands.entry_z)
    stops = {
        SpreadPosition.LONG_SPREAD: next_true(-z >= bands.stop_z),
        SpreadPosition.SHORT_SPREAD: next_true(z >= bands.stop_z),
    }
    exits = {
        SpreadPosition.LONG_SPREAD: next_true(-z <= bands.exit_z),
        SpreadPosition.SHORT_SPREAD: next_true(z <= bands.exit_z),
    }
    rolls = None if roll_bars is None else next_true(np.asarray(roll_bars, dtype=bool))
    hold_bars = (
        size
        if half_life_bars is None
        else max(1, math.ceil(bands.time_stop_half_lives * half_life_bars))
    )
    change = np.zeros(size + 1, dtype=np.int8)
    events: list[tuple[int, SignalAction, bool]] = []
    refused: list[int] = []
    bar = 0
    blocked = False
    while bar < size:
        if blocked:
            bar = int(unblock[bar]) + 1
            blocked = False
            continue
        entry = int(enter[bar])
        if entry >= size:
            break
        direction = SpreadPosition.SHORT_SPREAD if z[entry] > 0 else SpreadPosition.LONG_SPREAD
        if accept_entry is not None and not accept_entry(entry, direction):
            refused.append(entry)
            bar, blocked = entry + 1, True
            continue
        sign = 1 if direction is SpreadPosition.LONG_SPREAD else -1
        opening = SignalAction.ENTER_LONG_SPREAD if sign > 0 else SignalAction.ENTER_SHORT_SPREAD
        events.append((entry, opening, False))
        change[entry] += sign
        after = entry + 1
        if after >= size:
            break
        stop_at = int(stops[direction][after])
        exit_at = int(exits[direction][after])
        time_at = entry + hold_bars
        roll_at = size if rolls is None else int(rolls[after])
        close = min(roll_at, stop_at, exit_at, time_at)
        if close >= size:
            break
        if roll_at == close:
            action, blocked = SignalAction.EXIT, False
        elif stop_at == close:
            action, blocked = SignalAction.STOP, True
        elif exit_at == close:
            action, blocked = SignalAction.EXIT, False
        else:
            action, blocked = SignalAction.TIME_STOP, True
        events.append((close, action, roll_at == close))
        change[close] -= sign
        bar = close + 1
    return np.cumsum(change[:size], dtype=np.int8), events, refused


# ---------------------------------------------------------------------------------------------
# The research backtest


def research_backtest(bars: ResearchBars, config: ResearchConfig) -> ResearchResult:
    """The strategy over ``bars`` (see the module docstring); whole-array numpy throughout."""
    size = bars.size
    spot = 0.5 * (bars.tlt_bid + bars.tlt_ask)
    tltw_mid = 0.5 * (bars.tltw_bid + bars.tltw_ask)
    held_mid = 0.5 * (bars.call_bid + bars.call_ask)
    roll_mid = 0.5 * (bars.roll_call_bid + bars.roll_call_ask)
    rolled = np.isfinite(roll_mid)
    after_mid = np.where(rolled, roll_mid, held_mid)
    after_delta = np.where(rolled, bars.roll_call_delta, bars.call_delta)

    index_level = buy_write_index_vec(spot, held_mid, roll_mid, bars.tlt_distribution)
    tltw_tr = total_return_vec(tltw_mid, bars.tltw_distribution)
    x = np.log(index_level)
    y = np.log(tltw_tr)
    beta_after, alpha_after = _hedge_after(
        bars, config, x, y, spot, tltw_mid, (after_mid, after_delta)
    )

    beta = np.empty(size)
    alpha = np.empty(size)
    beta[0] = alpha[0] = np.nan
    beta[1:] = beta_after[:-1]
    alpha[1:] = alpha_after[:-1]
    spread = y - beta * x - alpha
    z = np.full(size, np.nan)
    mean = np.full(size, np.nan)
    ready = np.flatnonzero(np.isfinite(spread))
    if ready.size:
        first = int(ready[0])
        tail = spread[first:]
        if not np.isfinite(tail).all():
            bad = first + int(np.flatnonzero(~np.isfinite(tail))[0])
            raise ValueError(f"spread[{bad}] is not finite after the hedge was ready")
        if tail.size > config.z_window:
            z[first:], mean[first:] = rolling_zscore_mean_vec(
                tail, config.z_window, 1, config.z_std_floor
            )
    distance_bp = (spread - mean) * 1e4

    sizes: dict[int, tuple[int, int]] = {}

    def accept_entry(bar: int, direction: SpreadPosition) -> bool:
        if not (beta[bar] > 0):
            return False
        legs = size_legs(
            direction, config.gross_notional_usd, float(beta[bar]), float(tltw_mid[bar]),
            float(spot[bar]), float(after_mid[bar]), 0, "", math.nan,
        )  # fmt: skip
        if legs.tltw_shares <= 0 or legs.buy_write_units <= 0:
            return False
        sign = 1 if direction is SpreadPosition.LONG_SPREAD else -1
        sizes[bar] = (sign * legs.tltw_shares, -sign * legs.buy_write_units)
        return True

    roll_bars = None
    if config.exit_on_roll:
        roll_bars = rolled.copy()
        roll_bars[0] = False  # bar 0 opens the index; nothing is held yet
    position, signal_events, refused = signal_positions(
        z, distance_bp, config.bands, config.half_life_bars, accept_entry, roll_bars
    )

    # Quantities: set at each entry, back to zero at its close, forward-filled in between.
    change_tltw = np.zeros(size + 1)
    change_units = np.zeros(size + 1)
    events: list[ResearchEvent] = []
    held = (0, 0)
    for bar, action, by_roll in signal_events:
        if bar in sizes and action in (
            SignalAction.ENTER_LONG_SPREAD,
            SignalAction.ENTER_SHORT_SPREAD,
        ):
            held = sizes[bar]
            change_tltw[bar] += held[0]
            change_units[bar] += held[1]
            after = held
        else:
            change_tltw[bar] -= held[0]
            change_units[bar] -= held[1]
            after = (0, 0)
        events.append(
            ResearchEvent(
                bar, float(bars.ts[bar]), action, float(z[bar]), after[0], after[1], by_roll
            )
        )
    tltw_shares = np.cumsum(change_tltw[:size])
    units = np.cumsum(change_units[:size])

    book = pair_pnl_vec(bars, tltw_shares, units, config.commissions)
    pnl, costs = book.pnl_usd, book.costs_usd
    equity = config.capital_usd + np.cumsum(pnl) - np.cumsum(costs)
    metrics = _metrics(bars, config, equity, costs, events, spread, book)
    arrays = (index_level, tltw_tr, x, y, beta, alpha, spread, mean, z, distance_bp, position,
              tltw_shares, units, pnl, costs, equity)  # fmt: skip
    for array in arrays:
        array.flags.writeable = False
    return ResearchResult(
        bars.ts, *arrays, events=tuple(events), refused_entries=tuple(refused), metrics=metrics
    )


@dataclass(frozen=True, slots=True)
class PairPnl:
    """`pair_pnl_vec`'s answer: arrays per bar and totals over the run."""

    pnl_usd: np.ndarray
    costs_usd: np.ndarray
    traded_notional_usd: float
    half_spread_usd: float
    commissions_usd: float


def pair_pnl_vec(
    bars: ResearchBars,
    tltw_shares: np.ndarray,
    buy_write_units: np.ndarray,
    schedule: CommissionSchedule | None = None,
) -> PairPnl:
    """Mid P&L and costs of signed quantities held after each bar (TLTW shares; buy-write
    units, each 100 TLT short one call of the index's). See the module docstring:

        pnl_t = q_tltw,t-1 (M_t - M_t-1 + D_t) + q_units,t-1 100 ((S_t - S_t-1) - (C_held,t
                - C_after_roll,t-1))
        costs_t = sum over the legs traded on t of |fill - mid| x quantity x multiplier
                  + commissions (stock per order with its minimum, options per contract)

    with M, S, C mids, D TLTW's distribution, fills at the far touch. A trade that opens units
    writes the call held after the bar's roll; one that closes them buys back the call held
    into the bar; units held through a roll bar roll their call (both half spreads, two option
    commissions). A loop over trade and roll bars only; the P&L is whole-array.
    """
    schedule = schedule or sim_commissions()
    tltw_shares = np.asarray(tltw_shares, dtype=np.float64)
    units = np.asarray(buy_write_units, dtype=np.float64)
    for name, values in (("tltw_shares", tltw_shares), ("buy_write_units", units)):
        if values.shape != (bars.size,):
            raise ValueError(f"{name} has shape {values.shape}, bars have ({bars.size},)")
        first_bad(name, ~np.isfinite(values), values, "finite")
    spot = 0.5 * (bars.tlt_bid + bars.tlt_ask)
    tltw_mid = 0.5 * (bars.tltw_bid + bars.tltw_ask)
    held_mid = 0.5 * (bars.call_bid + bars.call_ask)
    roll_mid = 0.5 * (bars.roll_call_bid + bars.roll_call_ask)
    rolled = np.isfinite(roll_mid)
    after_mid = np.where(rolled, roll_mid, held_mid)
    size = bars.size
    pnl = np.zeros(size)
    held_tltw = tltw_shares[:-1]
    held_units = units[:-1]
    unit_change = SHARES_PER_UNIT * ((spot[1:] - spot[:-1]) - (held_mid[1:] - after_mid[:-1]))
    pnl[1:] = (
        held_tltw * (tltw_mid[1:] - tltw_mid[:-1] + bars.tltw_distribution[1:])
        + held_units * unit_change
    )
    costs = np.zeros(size)
    notional = half_spread = commissions = 0.0
    previous_tltw = np.concatenate([[0.0], tltw_shares[:-1]])
    previous_units = np.concatenate([[0.0], units[:-1]])
    traded = np.flatnonzero((tltw_shares != previous_tltw) | (units != previous_units))
    # Rolls of a position held through the roll bar: buy back the held call, write the new.
    rolling = np.flatnonzero(rolled & (previous_units != 0) & (units != 0))
    rolling = rolling[rolling > 0]
    for bar in np.union1d(traded, rolling).tolist():
        cost = 0.0
        legs: list[tuple[float, float, float, float, float]] = []  # qty, bid, ask, mid, mult
        shares = tltw_shares[bar] - previous_tltw[bar]
        if shares:
            legs.append((shares, bars.tltw_bid[bar], bars.tltw_ask[bar], tltw_mid[bar], 1.0))
            commissions += schedule.stock_usd(abs(shares))
            cost += schedule.stock_usd(abs(shares))
        unit_trade = units[bar] - previous_units[bar]
        if unit_trade:
            legs.append(
                (unit_trade * SHARES_PER_UNIT, bars.tlt_bid[bar], bars.tlt_ask[bar], spot[bar], 1.0)
            )
            fee = schedule.stock_usd(abs(unit_trade) * SHARES_PER_UNIT) + schedule.option_usd(
                abs(unit_trade)
            )
            commissions += fee
            cost += fee
            # The call moves the other way to the units: an opening trade writes the call held
            # after the bar's roll, a closing one buys back the call held into the bar.
            opening = previous_units[bar] == 0
            if opening and rolled[bar]:
                bid, ask, mid = bars.roll_call_bid[bar], bars.roll_call_ask[bar], roll_mid[bar]
            else:
                bid, ask, mid = bars.call_bid[bar], bars.call_ask[bar], held_mid[bar]
            legs.append((-unit_trade, bid, ask, mid, OPTION_MULTIPLIER))
        elif rolled[bar] and units[bar] != 0:
            contracts = units[bar]
            legs.append((contracts, bars.call_bid[bar], bars.call_ask[bar], held_mid[bar],
                         OPTION_MULTIPLIER))  # fmt: skip
            legs.append((-contracts, bars.roll_call_bid[bar], bars.roll_call_ask[bar],
                         roll_mid[bar], OPTION_MULTIPLIER))  # fmt: skip
            fee = 2 * schedule.option_usd(abs(contracts))
            commissions += fee
            cost += fee
        for quantity, bid, ask, mid, multiplier in legs:
            price = ask if quantity > 0 else bid
            notional += abs(quantity * price * multiplier)
            crossed = abs(price - mid) * abs(quantity) * multiplier
            half_spread += crossed
            cost += crossed
        costs[bar] = cost
    return PairPnl(pnl, costs, float(notional), float(half_spread), float(commissions))


def _daily_returns(day: np.ndarray, equity: np.ndarray, capital_usd: float) -> np.ndarray:
    """`trading.backtest.metrics.daily_returns` over arrays: the last equity of each day over
    the previous day's (the first day over the starting capital)."""
    last = np.flatnonzero(np.concatenate([day[1:] != day[:-1], [True]]))
    closes = equity[last]
    previous = np.concatenate([[capital_usd], closes[:-1]])
    return closes / previous - 1.0


def _metrics(bars, config, equity, costs, events, spread, book: PairPnl) -> Metrics:
    trips: list[float] = []
    opened: float | None = None
    for event in events:
        if event.action in (SignalAction.ENTER_LONG_SPREAD, SignalAction.ENTER_SHORT_SPREAD):
            opened = float(equity[event.bar] + costs[event.bar])
        elif opened is not None:
            trips.append(float(equity[event.bar]) - opened)
            opened = None
    r2 = None
    if bars.truth_premium is not None:
        keep = np.isfinite(spread) & np.isfinite(bars.truth_premium)
        r2 = r_squared(spread[keep], np.log1p(bars.truth_premium[keep]))
    run = RunTotals(
        capital_usd=config.capital_usd,
        equity=np.asarray(equity, dtype=float),
        daily_returns=_daily_returns(bars.day, equity, config.capital_usd),
        start=exchange_date(float(bars.ts[0])),
        end=exchange_date(float(bars.ts[-1])),
        bars=bars.size,
        trip_pnls=trips,
        intents=len(events),
        rejected_intents=0,
        fills=3 * len(events),  # TLT and the call (the BAG's legs), and TLTW
        traded_notional_usd=book.traded_notional_usd,
        commissions_usd=book.commissions_usd,
        half_spread_cost_usd=book.half_spread_usd,
    )
    return summarize(run, r_squared_vs_truth=r2)


# ---------------------------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> int:
    """``python -m trading.backtest.vectorized``: a research run on ibsim's seeded market;
    prints the metrics as JSON (and the trades with --events)."""
    from trading.backtest.sources import SimSource, parse_day
    from trading.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m trading.backtest.vectorized")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=parse_day, required=True)
    parser.add_argument("--end", type=parse_day, required=True)
    parser.add_argument("--premium-bp", type=float, default=20.0)
    parser.add_argument("--premium-half-life-days", type=float, default=1.0)
    parser.add_argument("--preset", choices=["atm", "replica"])
    parser.add_argument("--hedge", choices=[m.value for m in HedgeMethod])
    parser.add_argument("--half-life-bars", type=float, default=None)
    parser.add_argument(
        "--set", action="append", default=[], metavar="GROUP.FIELD=VALUE", help="a setting"
    )
    parser.add_argument("--events", action="store_true", help="print every trade")
    args = parser.parse_args(argv)
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        group, dot, name = key.partition(".")
        if not (sep and dot and group and name):
            parser.error(f"--set wants GROUP.FIELD=VALUE, got {item!r}")
        overrides.setdefault(group, {})[name] = value
    strategy = overrides.setdefault("strategy", {})
    if args.preset:
        strategy["preset"] = args.preset
    if args.hedge:
        strategy["hedge_method"] = args.hedge
    settings = load_settings(**overrides)
    source = SimSource(args.seed, args.start, args.end, args.premium_bp,
                       args.premium_half_life_days)  # fmt: skip
    bars = bars_from_sim(source.model(), args.start, args.end, settings)
    result = research_backtest(bars, ResearchConfig.from_settings(settings, args.half_life_bars))
    json.dump(result.metrics.as_dict(), sys.stdout, indent=2)
    print()
    if args.events:
        for event in result.events:
            print(
                f"{exchange_date(event.ts)} bar {event.bar:>7} {event.action.value:<20} "
                f"z {event.z:+.3f} tltw {event.tltw_shares:+d} units {event.buy_write_units:+d}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
