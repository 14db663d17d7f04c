"""Performance figures of a replay: return, Sharpe, Sortino, drawdown, trades, costs, tracking.

Conventions:

* daily returns are the close-to-close change of equity over each exchange day (the last bar
  close of each New York date), divided by the previous day's equity;
* Sharpe = mean(daily) / std(daily, ddof=1) x sqrt(252); Sortino = mean(daily) /
  sqrt(mean(min(daily, 0)^2)) x sqrt(252) (the downside deviation about 0, over all days);
  both are 0 when the denominator is 0 (no trades, flat equity);
* max drawdown = max over t of (peak equity to t - equity_t) / peak, over every bar close;
* a round trip runs from the first fill that opens a position while flat to the fill that
  leaves the book flat again; its P&L is the change of the book's total P&L (commissions
  included) over that span; hit rate = share of round trips with P&L > 0;
* turnover = traded notional (sum of |quantity x price x multiplier| of every fill) / capital,
  and per year (x 252 / trading days);
* R-squared of the spread against the ground truth = the squared Pearson correlation of the
  spread and log(1 + premium) at the same bar closes (the share of the spread's variance a
  linear function of the true premium explains);
* distributions: what the book credited (long) and debited (short) on the shares held over
  each ex-date, in USD (in the P&L too); a round trip's P&L includes the ones in its span;
* rejections: the intents risk refused, counted by reason code (an intent refused for two
  reasons counts under both);
* edge: the edge tests (`trading.domain.edge`) on the whole run's spread with the strategy's
  thresholds, the round trip's cost (a full-size pair on the run's last quotes, and the mean
  measured over the round trips), the expected edge of an entry at the entry band, and the
  verdict.

`Metrics.as_dict` is strict JSON: a figure that cannot be measured is None (null), never NaN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trading.backtest.replay import BacktestResult
from trading.domain.common import finite_or_none
from trading.domain.market_hours import exchange_date as exchange_day

TRADING_DAYS_PER_YEAR = 252
FLAT_USD = 1e-6


@dataclass(frozen=True, slots=True)
class RoundTrip:
    opened_ts: float
    closed_ts: float
    pnl_usd: float
    commissions_usd: float
    costs_usd: float = 0.0
    """Commissions and the half spread paid over the round trip."""
    tltw_notional_usd: float = 0.0
    """The largest TLTW position held in it, at its fill price."""

    @property
    def cost_bp(self) -> float:
        """The round trip's costs in bp of its TLTW notional (NaN without TLTW)."""
        if self.tltw_notional_usd <= 0:
            return math.nan
        return self.costs_usd / self.tltw_notional_usd * 1e4


@dataclass(frozen=True, slots=True)
class Metrics:
    start: str
    end: str
    trading_days: int
    bars: int
    capital_usd: float
    final_equity_usd: float
    pnl_usd: float
    total_return: float
    annual_return: float
    sharpe: float
    sortino: float
    max_drawdown: float
    intents: int
    rejected_intents: int
    fills: int
    round_trips: int
    hit_rate: float
    average_trade_usd: float
    traded_notional_usd: float
    turnover: float
    turnover_annual: float
    commissions_usd: float
    half_spread_cost_usd: float
    """What crossing the spread cost: sum over fills of |fill price - mid| x quantity x mult."""
    r_squared_vs_truth: float | None = None
    distributions_usd: float = 0.0
    """Distributions credited (long) and debited (short) on the shares held over ex-dates."""
    rejections: dict[str, int] = field(default_factory=dict)
    """Intents risk refused, by reason code."""
    edge: dict[str, Any] = field(default_factory=dict)
    """The edge diagnostics of the run (see the module docstring)."""

    def as_dict(self) -> dict[str, Any]:
        """Every figure, JSON-safe: NaN and infinities are None."""
        return finite_or_none(asdict(self))


def exchange_date(ts: float) -> str:
    """The New York date of epoch second ``ts`` as YYYY-MM-DD."""
    return exchange_day(ts).isoformat()


def equity_frame(result: BacktestResult) -> pd.DataFrame:
    """ts (epoch s), equity_usd, drawdown (fraction of the running peak), gross_notional_usd."""
    ts = np.array([p.ts for p in result.equity], dtype=float)
    equity = np.array([p.equity_usd for p in result.equity], dtype=float)
    gross = np.array([p.gross_notional_usd for p in result.equity], dtype=float)
    return pd.DataFrame(
        {"ts": ts, "equity_usd": equity, "drawdown": drawdowns(equity), "gross_notional_usd": gross}
    )


def daily_returns(frame: pd.DataFrame, capital_usd: float) -> np.ndarray:
    """Close-to-close daily returns; the first day is measured from the starting capital."""
    if frame.empty:
        return np.zeros(0)
    days = [exchange_date(t) for t in frame["ts"]]
    closes = frame.assign(day=days).groupby("day", sort=True)["equity_usd"].last().to_numpy()
    previous = np.concatenate([[capital_usd], closes[:-1]])
    return closes / previous - 1.0


def sharpe_ratio(returns: np.ndarray) -> float:
    if returns.size < 2:
        return 0.0
    std = float(np.std(returns, ddof=1))
    return 0.0 if std <= 0 else float(np.mean(returns)) / std * math.sqrt(TRADING_DAYS_PER_YEAR)


def sortino_ratio(returns: np.ndarray) -> float:
    if returns.size < 1:
        return 0.0
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if downside <= 0:
        return 0.0
    return float(np.mean(returns)) / downside * math.sqrt(TRADING_DAYS_PER_YEAR)


def round_trips(result: BacktestResult) -> list[RoundTrip]:
    """Flat-to-flat spans of the book (see the module docstring), with the costs paid in each
    (commissions and the half spread) and the largest TLTW notional held."""
    from trading.domain import pnl as domain_pnl

    book = domain_pnl.Book()
    marks: dict[str, float] = {}
    paid: dict[str, list[domain_pnl.Distribution]] = {}
    trips: list[RoundTrip] = []
    opened: tuple[float, float, float, float] | None = None  # ts, P&L, commissions, costs
    commissions = costs = tltw_notional = 0.0
    last_total = 0.0
    etf = result.settings.pair_spec().etf
    for fill in result.fills:
        if fill.sec_type == "BAG":
            continue
        key = str(fill.con_id)
        if fill.sec_type == "STK" and fill.symbol in result.distributions:
            paid[key] = result.distributions[fill.symbol]
        was_flat = all(abs(p.quantity) < FLAT_USD for p in book.positions.values())
        day = exchange_day(fill.ts)
        position = book.apply(
            domain_pnl.Fill(
                key=key,
                side=fill.side,
                quantity=fill.quantity,
                price=fill.price,
                commission_usd=fill.commission,
                multiplier=fill.multiplier,
            ),
            day,
        )
        if was_flat and opened is None:
            opened = (fill.ts, last_total, commissions, costs)
            tltw_notional = 0.0
        marks[key] = fill.price
        commissions += fill.commission
        mid = result.fill_mids.get(fill.exec_id, fill.price)
        costs += fill.commission + abs(fill.price - mid) * fill.quantity * fill.multiplier
        if fill.symbol == etf and fill.sec_type == "STK":
            tltw_notional = max(tltw_notional, abs(position.quantity) * fill.price)
        total = book.pair_pnl(marks, distributions=paid, as_of=day).total_pnl_usd
        last_total = total
        is_flat = all(abs(p.quantity) < FLAT_USD for p in book.positions.values())
        if is_flat and opened is not None:
            trips.append(
                RoundTrip(
                    opened[0],
                    fill.ts,
                    total - opened[1],
                    commissions - opened[2],
                    costs - opened[3],
                    tltw_notional,
                )
            )
            opened = None
    return trips


def r_squared(spread: np.ndarray, truth: np.ndarray) -> float:
    """Squared Pearson correlation (NaN when either series is constant or too short)."""
    if spread.size < 3 or np.std(spread) == 0 or np.std(truth) == 0:
        return math.nan
    return float(np.corrcoef(spread, truth)[0, 1] ** 2)


def spread_vs_truth(result: BacktestResult, premium: pd.Series) -> float:
    """R-squared of the replay's spread against log(1 + true premium) at the same bar closes."""
    ts = np.array([p.ts for p in result.spread_points])
    spread = np.array([p.spread for p in result.spread_points])
    truth = premium.reindex(ts).to_numpy()
    keep = np.isfinite(truth) & np.isfinite(spread)
    return r_squared(spread[keep], np.log1p(truth[keep]))


def drawdowns(equity: np.ndarray) -> np.ndarray:
    """Each point's drawdown: the fraction of the running peak lost (0 at a new peak)."""
    peak = np.maximum.accumulate(equity) if equity.size else equity
    return np.where(peak > 0, (peak - equity) / np.where(peak > 0, peak, 1.0), 0.0)


@dataclass(frozen=True, slots=True)
class RunTotals:
    """What a run did, however it was replayed: the engines (`compute_metrics`) or the research
    mode's arrays (`trading.backtest.vectorized`); `summarize` turns it into Metrics."""

    capital_usd: float
    equity: np.ndarray
    """Equity in USD at each recorded point (bar or fill), in time order."""
    daily_returns: np.ndarray
    start: str
    end: str
    bars: int
    trip_pnls: list[float]
    intents: int
    rejected_intents: int
    fills: int
    traded_notional_usd: float
    commissions_usd: float
    half_spread_cost_usd: float


def summarize(run: RunTotals, **extra: Any) -> Metrics:
    """The figures every backtest reports (returns, Sharpe, Sortino, drawdown, round trips,
    turnover), computed once for both replays; `extra` sets the rest of Metrics' fields."""
    capital = run.capital_usd
    final = float(run.equity[-1]) if run.equity.size else capital
    days = int(run.daily_returns.size)
    total_return = final / capital - 1.0
    annual = (
        (1.0 + total_return) ** (TRADING_DAYS_PER_YEAR / days) - 1.0
        if days > 0 and total_return > -1
        else 0.0
    )
    trips = run.trip_pnls
    turnover = run.traded_notional_usd / capital
    return Metrics(
        start=run.start,
        end=run.end,
        trading_days=days,
        bars=run.bars,
        capital_usd=capital,
        final_equity_usd=final,
        pnl_usd=final - capital,
        total_return=total_return,
        annual_return=annual,
        sharpe=sharpe_ratio(run.daily_returns),
        sortino=sortino_ratio(run.daily_returns),
        max_drawdown=float(drawdowns(run.equity).max()) if run.equity.size else 0.0,
        intents=run.intents,
        rejected_intents=run.rejected_intents,
        fills=run.fills,
        round_trips=len(trips),
        hit_rate=(sum(1 for t in trips if t > 0) / len(trips)) if trips else 0.0,
        average_trade_usd=(math.fsum(trips) / len(trips)) if trips else 0.0,
        traded_notional_usd=run.traded_notional_usd,
        turnover=turnover,
        turnover_annual=turnover * TRADING_DAYS_PER_YEAR / days if days else 0.0,
        commissions_usd=run.commissions_usd,
        half_spread_cost_usd=run.half_spread_cost_usd,
        **extra,
    )


def compute_metrics(result: BacktestResult, premium: pd.Series | None = None) -> Metrics:
    frame = equity_frame(result)
    trips = round_trips(result)
    marks_mid = _mid_at_fills(result)
    spread_cost = math.fsum(
        abs(f.price - marks_mid.get(f.exec_id, f.price)) * f.quantity * f.multiplier
        for f in result.fills
    )
    run = RunTotals(
        capital_usd=result.capital_usd,
        equity=frame["equity_usd"].to_numpy(),
        daily_returns=daily_returns(frame, result.capital_usd),
        start=exchange_date(frame["ts"].iloc[0]) if not frame.empty else "",
        end=exchange_date(frame["ts"].iloc[-1]) if not frame.empty else "",
        bars=result.bars,
        trip_pnls=[t.pnl_usd for t in trips],
        intents=len(result.records),
        rejected_intents=sum(1 for r in result.records if not r.decision.approved),
        fills=len(result.fills),
        traded_notional_usd=math.fsum(
            abs(f.quantity * f.price * f.multiplier) for f in result.fills
        ),
        commissions_usd=math.fsum(f.commission for f in result.fills),
        half_spread_cost_usd=spread_cost,
    )
    return summarize(
        run,
        r_squared_vs_truth=None if premium is None else spread_vs_truth(result, premium),
        distributions_usd=result.distributions_usd,
        rejections=rejections(result),
        edge=edge_report(result, trips),
    )


def rejections(result: BacktestResult) -> dict[str, int]:
    """Intents risk refused, by reason code (sorted by code)."""
    counts: dict[str, int] = {}
    for record in result.records:
        if not record.decision.approved:
            for code in {r.code for r in record.decision.reasons}:
                counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items()))


def edge_report(result: BacktestResult, trips: list[RoundTrip]) -> dict[str, Any]:
    """The edge tests on the run's whole spread with the strategy's thresholds, the round trip's
    cost (full size on the run's last quotes: ``cost_bp``; measured over the round trips:
    ``measured_cost_bp``), the expected profit and edge of an entry at the entry band over the
    median z-window std, and the verdict (edge / no edge / drifting)."""
    from trading.domain.edge import EdgeVerdict, measure_edge
    from trading.strategy.position import edge_limits

    strategy = result.settings.strategy
    limits = edge_limits(strategy)
    points = result.spread_points
    measured = [t.cost_bp for t in trips if math.isfinite(t.cost_bp)]
    out: dict[str, Any] = {
        "cost_bp": result.nominal_cost_bp,
        "measured_cost_bp": float(np.mean(measured)) if measured else None,
        "cost_margin": limits.cost_margin,
    }
    if len(points) < 3:
        return out | {"verdict": "not measured", "failures": [f"{len(points)} spread points"]}
    diagnostics = measure_edge([p.spread for p in points], limits)
    z_std_bp = float(np.median([p.std for p in points])) * 1e4
    profit = strategy.entry_z * z_std_bp * diagnostics.reversion_fraction()
    cost = result.nominal_cost_bp
    edge = profit - cost if math.isfinite(cost) else math.nan
    verdict = diagnostics.verdict.value
    if diagnostics.verdict is EdgeVerdict.EDGE and not profit >= limits.cost_margin * cost:
        verdict = EdgeVerdict.NO_EDGE.value
    return (
        out
        | diagnostics.as_dict()
        | {
            "z_std_bp": z_std_bp,
            "expected_profit_bp": profit,
            "expected_edge_bp": edge,
            "verdict": verdict,
        }
    )


def _mid_at_fills(result: BacktestResult) -> dict[str, float]:
    """The mid each fill was measured against (recorded by the fill model), by exec id."""
    return dict(result.fill_mids)
