"""The real ib_async 2.1 and ib_insync 0.9.86 clients against ibsim, scenario by scenario.

The frozen gateway's market sits at its 09:30 anchor (TLT mid exactly 90.00), so its quotes are
known by hand: TLT bid 90.00, ask 90.01 (one cent wide, bid = floor(100 mid) / 100).
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, date, datetime

import exchange_calendars
import pytest

from tests.ibsim.clients import connected, error_codes, eventually, qualified
from trading.domain import black_scholes as bs
from trading.ibsim import ET, SimConfig, SimulatedGateway

ANCHOR_UTC = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)


def covered_call(ibm, tlt, call, quantity=100):
    return ibm.Contract(
        secType="BAG",
        symbol="TLT",
        exchange="SMART",
        currency="USD",
        comboLegs=[
            ibm.ComboLeg(conId=tlt.conId, ratio=quantity, action="BUY", exchange="SMART"),
            ibm.ComboLeg(conId=call.conId, ratio=1, action="SELL", exchange="SMART"),
        ],
    )


async def test_connect_negotiates_176_and_syncs_the_account(live, ibm):
    started = time.perf_counter()
    async with connected(ibm, live) as ib:
        elapsed = time.perf_counter() - started
        assert ib.client.serverVersion() == 176
        assert ib.client.getAccounts() == ["DU1234567"]
        assert ib.isConnected()
        values = {v.tag: v.value for v in ib.accountValues() if v.currency == "USD"}
        assert float(values["NetLiquidation"]) == pytest.approx(1_000_000.0)
        assert ib.positions() == []
    assert elapsed < 2.0  # the benchmark measures it; a full sync must not wait on a timeout


async def test_qualify_tlt_tltw_and_an_option(live, ibm):
    async with connected(ibm, live) as ib:
        tlt, tltw = await qualified(
            ib, ibm.Stock("TLT", "SMART", "USD"), ibm.Stock("TLTW", "SMART", "USD")
        )
        assert (tlt.conId, tlt.primaryExchange) == (15547841, "NASDAQ")
        assert (tltw.conId, tltw.primaryExchange) == (545186218, "NASDAQ")
        (option,) = await qualified(ib, ibm.Option("TLT", "20261120", 90, "C", "SMART"))
        assert option.localSymbol == "TLT   261120C00090000"
        assert option.multiplier == "100"
        details = await ib.reqContractDetailsAsync(option)
        assert details[0].underConId == 15547841
        assert details[0].contract.lastTradeDateOrContractMonth == "20261120"


async def test_unknown_contract_gets_error_200(live, ibm):
    async with connected(ibm, live) as ib:
        errors = error_codes(ib)
        result = await ib.qualifyContractsAsync(ibm.Stock("NOPE", "SMART", "USD"))
        assert [c for c in result if c is not None] == []
        assert [code for _, code, _ in errors] == [200]


async def test_option_chain_has_third_friday_monthlies_and_weeklies(live, ibm):
    async with connected(ibm, live) as ib:
        chains = await ib.reqSecDefOptParamsAsync("TLT", "", "STK", 15547841)
        smart = next(c for c in chains if c.exchange == "SMART")
        assert smart.underlyingConId == "15547841" and smart.multiplier == "100"
        # Third Fridays of Nov and Dec 2026, and the weeklies in between.
        assert {"20261106", "20261113", "20261120", "20261127", "20261218"} <= set(
            smart.expirations
        )
        assert "20261126" in smart.expirations or "20261127" in smart.expirations
        assert {89.0, 89.5, 90.0, 90.5, 91.0} <= set(smart.strikes)


async def test_streaming_quotes_carry_model_greeks_and_sim_time(live, ibm):
    async with connected(ibm, live) as ib:
        tlt, option = await qualified(
            ib, ibm.Stock("TLT", "SMART", "USD"), ibm.Option("TLT", "20261120", 90, "C", "SMART")
        )
        stock_ticker = ib.reqMktData(tlt, "", False, False)
        option_ticker = ib.reqMktData(option, "", False, False)
        updates = []
        stock_ticker.updateEvent += lambda t: updates.append((t.bid, t.ask))
        await eventually(lambda: option_ticker.modelGreeks and len(updates) >= 3)
        assert round(stock_ticker.ask - stock_ticker.bid, 6) == 0.01
        greeks = option_ticker.modelGreeks
        expiry_close = datetime(2026, 11, 20, 16, tzinfo=ET).timestamp()
        # The Greeks are Black-Scholes at the quoted IV: recompute them independently.
        sim_time = live.truth().time.timestamp()
        tau_years = (expiry_close - sim_time) / (365 * 86400)
        reference = bs.greeks(greeks.undPrice, 90, tau_years, 0.04, 0.04, greeks.impliedVol, "C")
        assert greeks.delta == pytest.approx(reference.delta, abs=2e-3)
        assert greeks.vega == pytest.approx(reference.vega_per_vol_point, rel=2e-2)
        assert greeks.theta == pytest.approx(reference.theta_per_day, rel=2e-2)
        assert option_ticker.bid <= greeks.optPrice <= option_ticker.ask
        assert 0.02 <= option_ticker.ask - option_ticker.bid <= 0.11
        if hasattr(stock_ticker, "lastTimestamp") and stock_ticker.lastTimestamp:
            assert abs((stock_ticker.lastTimestamp - ANCHOR_UTC).total_seconds()) < 120


async def test_snapshot_tickers_include_greeks(live, ibm):
    async with connected(ibm, live) as ib:
        option, tlt = await qualified(
            ib, ibm.Option("TLT", "20261218", 92, "P", "SMART"), ibm.Stock("TLT", "SMART", "USD")
        )
        option_ticker, stock_ticker = await ib.reqTickersAsync(option, tlt)
        assert option_ticker.modelGreeks is not None
        assert -1 < option_ticker.modelGreeks.delta < 0  # a put
        assert stock_ticker.bid > 0 and stock_ticker.ask > stock_ticker.bid


async def test_current_time_is_sim_time(live, ibm):
    async with connected(ibm, live) as ib:
        current = await ib.reqCurrentTimeAsync()
        assert abs((current - ANCHOR_UTC).total_seconds()) < 60


@pytest.mark.filterwarnings("ignore:Series.values returning")
async def test_historical_daily_and_intraday_bars(live, ibm):
    xnys = exchange_calendars.get_calendar("XNYS")
    async with connected(ibm, live) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        daily = await ib.reqHistoricalDataAsync(tlt, "", "10 D", "1 day", "TRADES", True)
        assert len(daily) == 10
        assert all(isinstance(b.date, date) and xnys.is_session(b.date.isoformat()) for b in daily)
        assert daily[-1].date == date(2026, 11, 2)
        minutes = await ib.reqHistoricalDataAsync(tlt, "", "3600 S", "1 min", "MIDPOINT", True)
        assert len(minutes) in (60, 61)  # an hour of minutes, plus the one in progress
        stamps = [b.date for b in minutes]
        assert stamps == sorted(stamps)
        assert minutes[0].date.astimezone(ET).strftime("%H:%M") == "15:00"  # the day before
        for bar in daily + minutes:
            assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert daily[-2].close != daily[-3].close


async def test_market_order_fills_at_the_ask_with_ib_commission(frozen, ibm):
    async with connected(ibm, frozen) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        trade = ib.placeOrder(tlt, ibm.MarketOrder("BUY", 100))
        await eventually(
            lambda: trade.isDone() and trade.fills and trade.fills[0].commissionReport.execId
        )
        assert trade.orderStatus.status == "Filled"
        fill = trade.fills[0]
        assert fill.execution.price == 90.01  # the ask at mid 90.00
        assert fill.commissionReport.commission == 1.00  # max(0.005 x 100, $1 minimum)
        assert fill.execution.time == ANCHOR_UTC
        await eventually(lambda: ib.positions())
        (position,) = ib.positions()
        assert position.position == 100
        assert position.avgCost == pytest.approx((90.01 * 100 + 1.00) / 100)  # IB includes fees
        assert [entry.status for entry in trade.log][-1] == "Filled"


async def test_limit_order_rests_then_is_cancelled(frozen, ibm):
    async with connected(ibm, frozen) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        trade = ib.placeOrder(tlt, ibm.LimitOrder("BUY", 100, 89.50))
        await eventually(lambda: trade.orderStatus.status == "Submitted")
        assert trade.fills == []
        ib.cancelOrder(trade.order)
        await eventually(lambda: trade.orderStatus.status == "Cancelled")
        assert trade.fills == [] and ib.positions() == []
        assert [t for t in ib.openTrades()] == []


async def test_modified_limit_order_fills_once_marketable(frozen, ibm):
    async with connected(ibm, frozen) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        order = ibm.LimitOrder("SELL", 200, 91.00)
        trade = ib.placeOrder(tlt, order)
        await eventually(lambda: trade.orderStatus.status == "Submitted")
        order.lmtPrice = 89.00
        ib.placeOrder(tlt, order)
        await eventually(lambda: trade.orderStatus.status == "Filled")
        assert [f.execution.price for f in trade.fills] == [90.00]  # sold at the bid


async def test_large_order_fills_in_parts_of_the_displayed_size(frozen, ibm):
    async with connected(ibm, frozen) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        (ticker,) = await ib.reqTickersAsync(tlt)
        quantity = ticker.askSize * 3
        trade = ib.placeOrder(tlt, ibm.MarketOrder("BUY", quantity))
        await eventually(lambda: trade.fills and trade.orderStatus.filled)
        # The frozen market shows one ask size: that much fills now, the rest works.
        assert trade.orderStatus.filled == ticker.askSize
        assert trade.orderStatus.remaining == quantity - ticker.askSize
        assert trade.orderStatus.status == "Submitted"
        ib.cancelOrder(trade.order)
        await eventually(lambda: trade.orderStatus.status == "Cancelled")


async def test_stop_order_waits_until_triggered(frozen, ibm):
    async with connected(ibm, frozen) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        waiting = ib.placeOrder(tlt, ibm.StopOrder("BUY", 100, 95.00))
        triggered = ib.placeOrder(tlt, ibm.StopOrder("SELL", 100, 95.00))
        await eventually(lambda: triggered.orderStatus.status == "Filled")
        assert triggered.fills[0].execution.price == 90.00  # bid 90.00 <= 95: market sell
        assert waiting.orderStatus.status == "PreSubmitted" and waiting.fills == []


async def test_covered_call_bag_fills_legs_and_combo(frozen, ibm):
    async with connected(ibm, frozen) as ib:
        tlt, call = await qualified(
            ib, ibm.Stock("TLT", "SMART", "USD"), ibm.Option("TLT", "20261218", 90, "C", "SMART")
        )
        (call_ticker,) = await ib.reqTickersAsync(call)
        order = ibm.MarketOrder("BUY", 1)
        order.smartComboRoutingParams = [ibm.TagValue("NonGuaranteed", "1")]
        trade = ib.placeOrder(covered_call(ibm, tlt, call), order)
        await eventually(
            lambda: (
                trade.orderStatus.status == "Filled"
                and len(trade.fills) == 3
                and all(f.commissionReport.execId for f in trade.fills)
            )
        )
        assert trade.filled() == 1
        by_type = {f.contract.secType: f for f in trade.fills}
        assert by_type["STK"].execution.shares == 100 and by_type["STK"].execution.price == 90.01
        assert by_type["OPT"].execution.side == "SLD"
        assert by_type["OPT"].execution.price == call_ticker.bid
        assert by_type["BAG"].execution.price == pytest.approx(100 * 90.01 - call_ticker.bid)
        assert by_type["STK"].commissionReport.commission == 1.00
        assert by_type["OPT"].commissionReport.commission == 0.65
        await eventually(lambda: len(ib.positions()) == 2)
        held = {p.contract.conId: p.position for p in ib.positions()}
        assert held == {tlt.conId: 100, call.conId: -1}
        await eventually(lambda: len(ib.portfolio()) == 2)


async def test_second_client_sees_earlier_executions(frozen, ibm):
    async with connected(ibm, frozen, client_id=1) as first:
        (tlt,) = await qualified(first, ibm.Stock("TLT", "SMART", "USD"))
        trade = first.placeOrder(tlt, ibm.MarketOrder("BUY", 300))
        await eventually(lambda: trade.isDone() and trade.fills)
        exec_ids = {f.execution.execId for f in trade.fills}
        async with connected(ibm, frozen, client_id=2) as second:
            assert {f.execution.execId for f in second.fills()} == exec_ids
            executions = await second.reqExecutionsAsync()
            assert {f.execution.execId for f in executions} == exec_ids
            assert {f.execution.clientId for f in executions} == {1}
            assert [p.position for p in second.positions()] == [300]


async def test_duplicate_client_id_is_refused_with_326(live, ibm):
    async with connected(ibm, live, client_id=7):
        second = ibm.IB()
        errors = error_codes(second)
        with pytest.raises((TimeoutError, ConnectionError, OSError)):
            await second.connectAsync("127.0.0.1", live.port, clientId=7, timeout=0.5)
        second.disconnect()
        assert 326 in [code for _, code, _ in errors]


async def test_delayed_market_data_type(live, ibm):
    async with connected(ibm, live) as ib:
        errors = error_codes(ib)
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        ib.reqMarketDataType(3)
        ticker = ib.reqMktData(tlt, "", False, False)
        await eventually(lambda: ticker.marketDataType == 3 and ticker.bid > 0)
        assert 10167 in [code for _, code, _ in errors]
        # Delayed values are the market 15 minutes of trading time earlier.
        assert math.isfinite(ticker.ask) and ticker.ask - ticker.bid == pytest.approx(0.01)


async def test_keep_up_to_date_bars_follow_the_live_market(live, ibm):
    async with connected(ibm, live) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        bars = await ib.reqHistoricalDataAsync(
            tlt, "", "600 S", "1 min", "MIDPOINT", True, keepUpToDate=True
        )
        count = len(bars)
        updates = []
        bars.updateEvent += lambda bar_list, has_new_bar: updates.append(bar_list[-1].close)
        await eventually(lambda: len(updates) >= 2, timeout_s=5)
        assert len(bars) in (count, count + 1)  # the bar in progress is replaced in place
        (ticker,) = await ib.reqTickersAsync(tlt)
        assert abs(bars[-1].close - (ticker.bid + ticker.ask) / 2) < 0.05
        ib.cancelHistoricalData(bars)


async def test_combo_market_data_quotes_the_net_price(frozen, ibm):
    async with connected(ibm, frozen) as ib:
        tlt, call = await qualified(
            ib, ibm.Stock("TLT", "SMART", "USD"), ibm.Option("TLT", "20261218", 90, "C", "SMART")
        )
        (call_ticker,) = await ib.reqTickersAsync(call)
        combo = ib.reqMktData(covered_call(ibm, tlt, call), "", False, False)
        await eventually(lambda: combo.bid > 0 and combo.ask > 0)
        # Buy 100 TLT at the ask, sell the call at the bid (IB's per-share option convention).
        assert combo.ask == pytest.approx(100 * 90.01 - call_ticker.bid)
        assert combo.bid == pytest.approx(100 * 90.00 - call_ticker.ask)


async def test_pnl_subscription_reports_the_unrealized_loss_of_the_spread(frozen, ibm):
    async with connected(ibm, frozen) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        pnl = ib.reqPnL("DU1234567")
        trade = ib.placeOrder(tlt, ibm.MarketOrder("BUY", 100))
        await eventually(lambda: trade.isDone())
        # Bought 100 at the ask 90.01 plus $1: marked at the mid 90.005 that is -$1.50.
        await eventually(lambda: pnl.unrealizedPnL == pytest.approx(-1.50))
        assert pnl.realizedPnL == 0.0
        ib.cancelPnL("DU1234567")


async def test_tltw_distribution_tick_announces_the_next_ex_date(live, ibm):
    async with connected(ibm, live) as ib:
        (tltw,) = await qualified(ib, ibm.Stock("TLTW", "SMART", "USD"))
        ticker = ib.reqMktData(tltw, "456", False, False)
        await eventually(lambda: ticker.dividends is not None)
        dividends = ticker.dividends
        assert dividends.nextDate == date(2026, 12, 1)  # first session of December
        assert dividends.nextAmount == pytest.approx(0.01 * 24.0, rel=0.02)  # 12% a year / 12
        assert dividends.past12Months > 10 * dividends.nextAmount


async def test_head_timestamp_is_the_start_of_the_generated_history(live, ibm):
    async with connected(ibm, live) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        head = await ib.reqHeadTimeStampAsync(tlt, "TRADES", True, 1)
        assert head.date() < date(2025, 9, 1)  # 300 sessions before 2026-11-02


async def test_a_fast_clock_skips_the_night_and_keeps_serving(ibm):
    # 7,200x: two sim hours a second; the market loop must still let requests through.
    with SimulatedGateway(SimConfig(seed=2, speed=7200.0, tick_interval_s=1.0), port=0) as gw:
        async with connected(ibm, gw) as ib:
            (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
            ticker = ib.reqMktData(tlt, "", False, False)
            await ib.reqHistoricalDataAsync(
                tlt, "", "1 D", "5 mins", "TRADES", True, keepUpToDate=True
            )
            await eventually(lambda: gw.truth().time.date() > date(2026, 11, 2), timeout_s=10)
            started = time.perf_counter()
            current = await asyncio.wait_for(ib.reqCurrentTimeAsync(), 2)
            assert time.perf_counter() - started < 1.0
            sim = current.astimezone(ET)
            assert sim.date() > date(2026, 11, 2)
            assert (9, 30) <= (sim.hour, sim.minute) < (16, 0)  # always inside a session
            assert ticker.bid > 0


async def test_the_master_client_sees_every_clients_orders(ibm):
    with SimulatedGateway(SimConfig(seed=2, speed=1e-9, master_client_id=9), port=0) as gw:
        async with connected(ibm, gw, client_id=9) as master, connected(ibm, gw, 1) as trader:
            (tlt,) = await qualified(trader, ibm.Stock("TLT", "SMART", "USD"))
            order = ibm.MarketOrder("BUY", 100, orderRef="intent-1")
            trade = trader.placeOrder(tlt, order)
            await eventually(lambda: trade.isDone())
            seen = await eventually(
                lambda: [t for t in master.trades() if t.order.orderRef == "intent-1"]
            )
            assert seen[0].orderStatus.status == "Filled"
            assert [f.execution.execId for f in seen[0].fills] == [
                f.execution.execId for f in trade.fills
            ]


async def test_positions_are_sent_on_a_change_and_account_updates_every_three_minutes(ibm):
    """IB's reqPositions sends the positions once and then each change; reqAccountUpdates
    sends the account and portfolio every three minutes as well. At 600x three sim minutes are
    0.3 s: a held position must not come back as a position message at each push."""
    with SimulatedGateway(SimConfig(seed=11, speed=600.0), port=0) as gateway:
        async with connected(ibm, gateway) as ib:
            (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
            positions, portfolio = [], []
            ib.positionEvent += positions.append
            ib.updatePortfolioEvent += portfolio.append
            trade = ib.placeOrder(tlt, ibm.MarketOrder("BUY", 100))
            await eventually(lambda: trade.isDone() and positions, what="the fill's position")
            pushes = len(portfolio)
            await eventually(
                lambda: len(portfolio) >= pushes + 3, timeout_s=10, what="three account pushes"
            )
            assert [(p.contract.conId, p.position) for p in positions] == [(15547841, 100.0)]
            assert {(p.contract.conId, p.position) for p in portfolio} == {(15547841, 100.0)}
