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
  linear function of the true premium explains).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from trading.backtest.replay import BacktestResult
from trading.domain.market_hours import EXCHANGE_TIMEZONE

TRADING_DAYS_PER_YEAR = 252
FLAT_USD = 1e-6


@dataclass(frozen=True, slots=True)
class RoundTrip:
    opened_ts: float
    closed_ts: float
    pnl_usd: float
    commissions_usd: float


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

    def as_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def exchange_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(EXCHANGE_TIMEZONE).date().isoformat()


def equity_frame(result: BacktestResult) -> pd.DataFrame:
    """ts (epoch s), equity_usd, drawdown (fraction of the running peak), gross_notional_usd."""
    ts = np.array([p.ts for p in result.equity], dtype=float)
    equity = np.array([p.equity_usd for p in result.equity], dtype=float)
    gross = np.array([p.gross_notional_usd for p in result.equity], dtype=float)
    peak = np.maximum.accumulate(equity) if equity.size else equity
    drawdown = np.where(peak > 0, (peak - equity) / np.where(peak > 0, peak, 1.0), 0.0)
    return pd.DataFrame(
        {"ts": ts, "equity_usd": equity, "drawdown": drawdown, "gross_notional_usd": gross}
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
    """Flat-to-flat spans of the book (see the module docstring)."""
    from trading.domain import pnl as domain_pnl
    from trading.domain.common import Side as DomainSide

    book = domain_pnl.Book()
    marks: dict[str, float] = {}
    trips: list[RoundTrip] = []
    opened: tuple[float, float, float] | None = None  # ts, total P&L, commissions at open
    commissions = 0.0
    last_total = 0.0
    for fill in result.fills:
        if fill.sec_type == "BAG":
            continue
        key = str(fill.con_id)
        was_flat = all(abs(p.quantity) < FLAT_USD for p in book.positions.values())
        book.apply(
            domain_pnl.Fill(
                key=key,
                side=DomainSide(str(fill.side)),
                quantity=fill.quantity,
                price=fill.price,
                commission_usd=fill.commission,
                multiplier=fill.multiplier,
            )
        )
        if was_flat and opened is None:
            opened = (fill.ts, last_total, commissions)
        marks[key] = fill.price
        commissions += fill.commission
        total = book.pair_pnl(marks).total_pnl_usd
        last_total = total
        is_flat = all(abs(p.quantity) < FLAT_USD for p in book.positions.values())
        if is_flat and opened is not None:
            trips.append(RoundTrip(opened[0], fill.ts, total - opened[1], commissions - opened[2]))
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


def compute_metrics(result: BacktestResult, premium: pd.Series | None = None) -> Metrics:
    capital = result.capital_usd
    frame = equity_frame(result)
    returns = daily_returns(frame, capital)
    final = float(frame["equity_usd"].iloc[-1]) if not frame.empty else capital
    days = int(returns.size)
    total_return = final / capital - 1.0
    annual = (
        (1.0 + total_return) ** (TRADING_DAYS_PER_YEAR / days) - 1.0
        if days > 0 and total_return > -1
        else 0.0
    )
    trips = round_trips(result)
    marks_mid = _mid_at_fills(result)
    notional = math.fsum(abs(f.quantity * f.price * f.multiplier) for f in result.fills)
    spread_cost = math.fsum(
        abs(f.price - marks_mid.get(f.exec_id, f.price)) * f.quantity * f.multiplier
        for f in result.fills
    )
    turnover = notional / capital
    return Metrics(
        start=exchange_date(frame["ts"].iloc[0]) if not frame.empty else "",
        end=exchange_date(frame["ts"].iloc[-1]) if not frame.empty else "",
        trading_days=days,
        bars=result.bars,
        capital_usd=capital,
        final_equity_usd=final,
        pnl_usd=final - capital,
        total_return=total_return,
        annual_return=annual,
        sharpe=sharpe_ratio(returns),
        sortino=sortino_ratio(returns),
        max_drawdown=float(frame["drawdown"].max()) if not frame.empty else 0.0,
        intents=len(result.records),
        rejected_intents=sum(1 for r in result.records if not r.decision.approved),
        fills=len(result.fills),
        round_trips=len(trips),
        hit_rate=(sum(1 for t in trips if t.pnl_usd > 0) / len(trips)) if trips else 0.0,
        average_trade_usd=(math.fsum(t.pnl_usd for t in trips) / len(trips)) if trips else 0.0,
        traded_notional_usd=notional,
        turnover=turnover,
        turnover_annual=turnover * TRADING_DAYS_PER_YEAR / days if days else 0.0,
        commissions_usd=math.fsum(f.commission for f in result.fills),
        half_spread_cost_usd=spread_cost,
        r_squared_vs_truth=None if premium is None else spread_vs_truth(result, premium),
    )


def _mid_at_fills(result: BacktestResult) -> dict[str, float]:
    """The mid each fill was measured against (recorded by the fill model), by exec id."""
    return dict(result.fill_mids)
