"""How much of TLTW's premium each preset's spread captures, on ibsim's market model.

    python -m trading.backtest.study [--sessions 30] [--seed 1]

Runs the live engine (no I/O) over the model's one-minute bars for each configuration and
reports, over the bars after warm-up, the share of the premium's variance the spread explains:
R^2 of the spread on the model's true premium (both de-meaned), in levels and in one-day
changes. The premium is what the strategy trades; the rest of the spread's variance is tracking
error between the synthetic leg and TLTW's own index, which the signal mistakes for opportunity.
P&L net of costs needs a fill model and belongs to the backtest (trading/backtest).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from trading.backtest.simfeed import sim_model, simulated_messages
from trading.bus import Dividends, Message
from trading.ibsim.market import MarketModel
from trading.settings import load_settings
from trading.strategy.engine import StrategyEngine

BARS_PER_DAY = 390


@dataclass(frozen=True, slots=True)
class Capture:
    name: str
    bars: int
    r2_levels: float
    r2_daily_changes: float
    spread_std_bp: float


def r_squared(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1] ** 2)


def capture(
    name: str,
    model: MarketModel,
    messages: Iterable[Message],
    total_return: bool = True,
    **strategy: object,
) -> Capture:
    """Run one configuration; see the module docstring for the figures."""
    settings = load_settings(strategy={"cointegration_pvalue": 0.99, **strategy})
    engine = StrategyEngine.from_settings(settings)
    engine.warming_up = True  # estimators only: this measures the spread, not trades
    spreads, premiums = [], []
    for msg in messages:
        if not total_return and isinstance(msg, Dividends):
            continue
        point = engine.on_message(msg).spread_point
        if point is not None:
            when = datetime.fromtimestamp(point.ts, UTC)
            spreads.append(point.spread)
            premiums.append(model.tltw_premium(model.calendar.tau(when)))
    s = np.asarray(spreads)
    p = np.log1p(np.asarray(premiums))
    daily_s = s[BARS_PER_DAY:] - s[:-BARS_PER_DAY]
    daily_p = p[BARS_PER_DAY:] - p[:-BARS_PER_DAY]
    return Capture(
        name,
        s.size,
        r_squared(s - s.mean(), p - p.mean()),
        r_squared(daily_s, daily_p),
        float(np.std(s) * 1e4),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    model = sim_model(seed=args.seed, history_days=args.sessions + 5)
    days = model.calendar.dates
    anchor = model.calendar.anchor_index
    first, last = days[anchor - args.sessions], days[anchor - 1]
    messages = list(simulated_messages(model, first, last))
    window = {"z_window": 2 * BARS_PER_DAY, "ols_window": 5 * BARS_PER_DAY}
    runs: list[tuple[str, dict[str, object], bool]] = [
        ("atm, delta hedge", {"preset": "atm", "hedge_method": "delta"}, True),
        ("replica, delta hedge", {"preset": "replica", "hedge_method": "delta"}, True),
        ("replica, OLS 5 days", {"preset": "replica", "hedge_method": "ols"}, True),
        (
            "replica, OLS 1 day",
            {"preset": "replica", "hedge_method": "ols", "ols_window": 390},
            True,
        ),
        ("replica, Kalman 1e-9", {"preset": "replica", "hedge_method": "kalman"}, True),
        (
            "replica, Kalman 1e-7",
            {"preset": "replica", "hedge_method": "kalman", "kalman_delta": 1e-7},
            True,
        ),
        ("replica, delta, price (no TR)", {"preset": "replica", "hedge_method": "delta"}, False),
    ]
    print(f"{len(messages):,} messages, sessions {first} .. {last}, seed {args.seed}")
    print(f"{'configuration':<32}{'bars':>7}{'R2 level':>10}{'R2 1-day':>10}{'std bp':>9}")
    for name, overrides, total_return in runs:
        result = capture(name, model, messages, total_return, **(window | overrides))
        print(
            f"{result.name:<32}{result.bars:>7}{result.r2_levels:>10.3f}"
            f"{result.r2_daily_changes:>10.3f}{result.spread_std_bp:>9.1f}"
        )


if __name__ == "__main__":
    main()
