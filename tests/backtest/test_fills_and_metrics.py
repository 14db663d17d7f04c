"""The simulated broker, the commission schedule and the metrics, on hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trading.backtest.fills import FillModel, sim_commissions
from trading.backtest.metrics import daily_returns, equity_frame, sharpe_ratio, sortino_ratio
from trading.backtest.replay import BacktestResult, EquityPoint
from trading.bus import (
    IntentLeg,
    IntentPurpose,
    LegKind,
    OptionQuote,
    OrderIntent,
    Quote,
    Side,
    SignalAction,
)
from trading.execution.marks import Marks
from trading.settings import load_settings

TS = 1_788_535_620.0  # 2026-09-04 15:27 New York
CALL_ID = 539_028_400


def marks() -> Marks:
    m = Marks()
    m.update(Quote("TLT", 15547841, 90.00, 90.01, 100.0, 100.0, None, TS, TS))
    m.update(Quote("TLTW", 545186218, 24.40, 24.41, 100.0, 100.0, None, TS, TS))
    m.update(
        OptionQuote("TLT", CALL_ID, "TLT   261016C00092000", "20261016", 92.0, "C", 1.20, 1.26,
                    10.0, 10.0, 0.16, 0.35, 0.08, 0.1, -0.02, 90.0, 1.23, TS, TS)
    )  # fmt: skip
    return m


def intent(bw_side: Side, bw_limit: float, stock_side: Side, stock_limit: float) -> OrderIntent:
    return OrderIntent(
        intent_id="TLTBW-TLTW-entry-1",
        pair_id="TLTBW-TLTW",
        ts=TS,
        purpose=IntentPurpose.ENTRY,
        action=SignalAction.ENTER_SHORT_SPREAD,
        legs=(
            IntentLeg(LegKind.BUY_WRITE, "TLT", bw_side, 5, bw_limit, 15547841, CALL_ID,
                      "20261016", 92.0),
            IntentLeg(LegKind.STOCK, "TLTW", stock_side, 1965, stock_limit, 545186218),
        ),
    )  # fmt: skip


def test_commission_schedule_is_ibs_fixed_rates_from_ibsim_config():
    schedule = sim_commissions()

    assert schedule.stock_usd(100) == pytest.approx(1.0)  # 0.50 -> the 1 USD minimum
    assert schedule.stock_usd(500) == pytest.approx(2.5)
    assert schedule.option_usd(5) == pytest.approx(3.25)


def test_buy_write_bought_pays_tlt_ask_and_sells_the_call_at_the_bid():
    model = FillModel()
    order = intent(Side.BUY, 9010.0, Side.SELL, 24.39)

    done = model.try_fill(order, 0, 1, marks(), TS)

    assert done is not None
    assert done.price == pytest.approx(100 * 90.01 - 1.20)
    stock, call = done.fills
    assert (stock.side, stock.quantity, stock.price, stock.sec_type) == (
        Side.BUY,
        500,
        90.01,
        "STK",
    )
    assert stock.commission == pytest.approx(2.5)
    assert (call.side, call.quantity, call.price, call.multiplier) == (Side.SELL, 5, 1.20, 100.0)
    assert call.commission == pytest.approx(5 * 0.65)


def test_tltw_sale_fills_at_the_bid_and_a_limit_through_the_book_rests():
    model = FillModel()

    sold = model.try_fill(intent(Side.BUY, 9010.0, Side.SELL, 24.39), 1, 2, marks(), TS)
    resting = model.try_fill(intent(Side.BUY, 9010.0, Side.SELL, 24.405), 1, 3, marks(), TS)
    bw_resting = model.try_fill(intent(Side.BUY, 8998.0, Side.SELL, 24.39), 0, 4, marks(), TS)

    assert sold is not None and sold.fills[0].price == 24.40
    assert sold.fills[0].commission == pytest.approx(1965 * 0.005)
    assert resting is None
    assert bw_resting is None  # 100 x 90.01 - 1.20 = 8999.80 > 8998 limit


def result_with_equity(values: list[float], capital: float = 100.0) -> BacktestResult:
    settings = load_settings(strategy={"capital_usd": capital})
    result = BacktestResult(settings)
    day = 86_400.0
    start = 1_788_278_400.0 + 15 * 3600  # 2026-09-01 11:00 New York
    result.equity = [EquityPoint(start + i * day, v, 0.0) for i, v in enumerate(values)]
    return result


def test_drawdown_is_the_fall_from_the_running_peak():
    frame = equity_frame(result_with_equity([100.0, 110.0, 99.0, 105.0, 120.0]))

    assert frame["drawdown"].max() == pytest.approx((110 - 99) / 110)


def test_daily_returns_sharpe_and_sortino_match_their_formulas():
    result = result_with_equity([101.0, 99.99, 102.0])
    returns = daily_returns(equity_frame(result), 100.0)

    expected = np.array([0.01, 99.99 / 101 - 1, 102 / 99.99 - 1])
    assert returns == pytest.approx(expected)
    assert sharpe_ratio(returns) == pytest.approx(
        expected.mean() / expected.std(ddof=1) * math.sqrt(252)
    )
    downside = math.sqrt((expected[1] ** 2) / 3)
    assert sortino_ratio(returns) == pytest.approx(expected.mean() / downside * math.sqrt(252))
