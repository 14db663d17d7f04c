"""Faults on demand arrive at both real clients as IB presents them; the HTTP admin API."""

from __future__ import annotations

import asyncio
import json
import math
import urllib.error
import urllib.request
from datetime import datetime

import pytest

from tests.ibsim.clients import connected, error_codes, eventually, qualified
from trading.ibsim import ET, SimConfig, SimulatedGateway

IB_CODES = (1100, 1101, 1102, 2103, 2104, 2105, 2106, 2158, 10167, 354)


async def test_connectivity_and_farm_errors_arrive_with_their_codes(live, ibm):
    async with connected(ibm, live) as ib:
        errors = error_codes(ib)
        for code in IB_CODES:
            live.faults.send_error(code)
        await eventually(lambda: [c for _, c, _ in errors] == list(IB_CODES))
        assert all(req_id == -1 for req_id, _, _ in errors)
        text = dict((c, m) for _, c, m in errors)
        assert text[1100] == "Connectivity between IB and Trader Workstation has been lost."
        assert text[2103] == "Market data farm connection is broken:usfarm"


async def test_error_1101_drops_the_subscriptions(live, ibm):
    async with connected(ibm, live) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        ticker = ib.reqMktData(tlt, "", False, False)
        await eventually(lambda: ticker.bid > 0)
        live.faults.send_error(1101)
        assert live.call(lambda: sum(len(s.market_data) for s in live._core.sessions)) == 0


async def test_dropped_connection_disconnects_the_client(live, ibm):
    async with connected(ibm, live) as ib:
        gone = asyncio.Event()
        ib.disconnectedEvent += lambda *args: gone.set()
        live.faults.drop_connections()
        await asyncio.wait_for(gone.wait(), 5)
        assert not ib.isConnected()


async def test_market_data_stops_and_resumes(live, ibm):
    async with connected(ibm, live) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        ticker = ib.reqMktData(tlt, "", False, False)
        updates = []
        ticker.updateEvent += lambda t: updates.append(1)
        await eventually(lambda: len(updates) >= 2)
        live.faults.stop_market_data()
        await asyncio.sleep(0.1)  # let ticks already in flight land
        stopped_at = len(updates)
        await asyncio.sleep(0.4)  # eight steps of the 50 ms market loop: nothing may come
        assert len(updates) == stopped_at
        live.faults.resume_market_data()
        await eventually(lambda: len(updates) > stopped_at)


async def test_rejected_order_is_cancelled_with_201(frozen, ibm):
    async with connected(ibm, frozen) as ib:
        errors = error_codes(ib)
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        frozen.faults.reject_next_order(reason="simulated margin")
        trade = ib.placeOrder(tlt, ibm.MarketOrder("BUY", 100))
        await eventually(lambda: trade.orderStatus.status == "Cancelled")
        assert (trade.order.orderId, 201, "Order rejected - reason:simulated margin") in errors
        second = ib.placeOrder(tlt, ibm.MarketOrder("BUY", 100))
        await eventually(lambda: second.orderStatus.status == "Filled")  # only the next one


async def test_pacing_violation_ends_the_historical_request_with_162(live, ibm):
    async with connected(ibm, live) as ib:
        errors = error_codes(ib)
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        live.faults.pacing_violation_next_historical()
        bars = await ib.reqHistoricalDataAsync(tlt, "", "1 D", "1 hour", "TRADES", True)
        assert list(bars) == []
        assert [code for _, code, _ in errors] == [162]
        again = await ib.reqHistoricalDataAsync(tlt, "", "1 D", "1 hour", "TRADES", True)
        assert len(again) > 0


@pytest.mark.parametrize("kind", ["nan", "crossed"])
async def test_bad_quote_reaches_the_client_once(live, ibm, kind):
    async with connected(ibm, live) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        ticker = ib.reqMktData(tlt, "", False, False)
        seen = []
        ticker.updateEvent += lambda t: seen.append((t.bid, t.ask))
        await eventually(lambda: ticker.bid > 0)
        live.faults.bad_quote("TLT", kind)
        if kind == "nan":
            await eventually(lambda: any(math.isnan(b) and math.isnan(a) for b, a in seen))
        else:
            await eventually(lambda: any(b > a for b, a in seen))
        # The next batch is a good quote again.
        await eventually(lambda: ticker.bid < ticker.ask and math.isfinite(ticker.bid))


def test_bad_quote_kind_is_checked(live):
    with pytest.raises(ValueError, match="kind"):
        live.faults.bad_quote("TLT", "sideways")


async def test_early_assignment_turns_the_short_call_into_short_stock(frozen, ibm):
    async with connected(ibm, frozen) as ib:
        (call,) = await qualified(ib, ibm.Option("TLT", "20261218", 88, "C", "SMART"))
        trade = ib.placeOrder(call, ibm.MarketOrder("SELL", 2))
        await eventually(lambda: trade.orderStatus.status == "Filled")
        frozen.faults.assign_early(call.conId)
        await eventually(
            lambda: {p.contract.conId: p.position for p in ib.positions()} == {15547841: -200}
        )
        delivered = [f for f in ib.fills() if f.contract.secType == "STK"]
        assert [(f.execution.side, f.execution.shares, f.execution.price) for f in delivered] == [
            ("SLD", 200, 88.0)
        ]
        with pytest.raises(ValueError, match="no short position"):
            frozen.faults.assign_early(call.conId)


def test_premium_shock_moves_the_truth(frozen):
    before = frozen.truth()
    frozen.faults.shock_premium(150.0)
    after = frozen.truth()
    assert after.tltw_premium == pytest.approx(0.015)
    assert after.tltw_nav == before.tltw_nav
    assert after.tltw_price == pytest.approx(after.tltw_nav * 1.015)
    frozen.reset()
    assert frozen.truth() == before


async def test_expiring_options_settle_into_stock_at_the_close(ibm):
    # Friday 2026-11-06 is a weekly expiry; start 20 s before the close at 20x speed.
    config = SimConfig(seed=5, speed=20.0, start=datetime(2026, 11, 6, 15, 59, 40, tzinfo=ET))
    with SimulatedGateway(config, port=0) as gateway:
        async with connected(ibm, gateway) as ib:
            (itm, otm) = await qualified(
                ib,
                ibm.Option("TLT", "20261106", 85, "C", "SMART"),
                ibm.Option("TLT", "20261106", 99, "C", "SMART"),
            )
            spot = gateway.truth().tlt_mid
            assert 85 < spot < 99
            for option in (itm, otm):
                ib.placeOrder(option, ibm.MarketOrder("BUY", 1))
            resting = ib.placeOrder(itm, ibm.LimitOrder("BUY", 1, 0.05))
            await eventually(lambda: len(ib.positions()) == 2)
            await eventually(
                lambda: {p.contract.conId: p.position for p in ib.positions()} == {15547841: 100},
                timeout_s=10,
            )
            (stock,) = ib.positions()
            assert stock.avgCost == pytest.approx(85.0)  # bought at the strike
            assert resting.orderStatus.status == "Cancelled"  # a DAY order at the close
            assert gateway.truth().time >= datetime(2026, 11, 9, 9, 30, tzinfo=ET)


def _http(gateway: SimulatedGateway, method: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{gateway.admin_port}{path}", data=data, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_admin_http_api_serves_truth_and_faults(live, ibm):
    status, truth = _http(live, "GET", "/truth")
    assert status == 200
    assert truth["tltw_price"] == pytest.approx(truth["tltw_nav"] * (1 + truth["tltw_premium"]))
    assert truth["time"].startswith("2026-11-02T09:3")
    async with connected(ibm, live) as ib:
        errors = error_codes(ib)
        assert _http(live, "POST", "/faults/send_error", {"code": 1100}) == (200, {"ok": True})
        await eventually(lambda: [c for _, c, _ in errors] == [1100])
    assert _http(live, "POST", "/faults/bad_quote", {"symbol": "TLT", "kind": "x"})[0] == 400
    assert _http(live, "POST", "/faults/launch_missiles", {})[0] == 404
    assert _http(live, "POST", "/faults/shock_premium", {"bp": 80})[0] == 200
    assert live.truth().tltw_premium == pytest.approx(0.008, abs=1e-4)
    assert _http(live, "POST", "/reset") == (200, {"ok": True})
    assert abs(live.truth().tltw_premium - 0.008) > 1e-4


async def test_a_backed_up_client_is_conflated_then_its_ticks_resume(ibm):
    """While a client's socket is full (flow control paused the transport) ibsim sends it
    nothing and counts the conflated steps; once it drains, the ticks resume (as changes from
    what it was last sent, so nothing is lost but intermediate values)."""
    config = SimConfig(seed=2, speed=3600.0, tick_interval_s=1.0)
    with SimulatedGateway(config, port=0) as gateway:
        async with connected(ibm, gateway) as ib:
            (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
            ticker = ib.reqMktData(tlt, "", False, False)
            await eventually(lambda: ticker.bid > 0)

            def pause() -> None:
                for session in gateway._core.sessions:
                    session.pause_writing()

            def resume() -> int:
                for session in gateway._core.sessions:
                    session.resume_writing()
                return gateway._core.conflated_steps

            gateway.call(pause)
            await asyncio.sleep(0.2)  # what was written before the pause arrives first
            paused_at = ticker.time
            await asyncio.sleep(0.3)
            assert ticker.time == paused_at  # nothing was written while paused
            conflated = gateway.call(resume)
            assert conflated > 10
            await eventually(lambda: ticker.time is not None and ticker.time > paused_at)


async def test_an_order_on_a_dropping_connection_is_lost_with_what_follows_it(frozen, ibm):
    """The fault behind a wedged risk service: the connection dies while orders are on the
    wire; the gateway never works them, and its truth lists them as lost."""
    async with connected(ibm, frozen) as ib:
        (tlt, tltw) = await qualified(
            ib, ibm.Stock("TLT", "SMART", "USD"), ibm.Stock("TLTW", "SMART", "USD")
        )
        gone = asyncio.Event()
        ib.disconnectedEvent += lambda *args: gone.set()
        frozen.faults.drop_on_next_place_order()
        first = ibm.MarketOrder("BUY", 100, orderRef="lost-1")
        second = ibm.MarketOrder("SELL", 300, orderRef="lost-2")
        ib.placeOrder(tlt, first)
        ib.placeOrder(tltw, second)  # written into the same socket before the close is seen
        await asyncio.wait_for(gone.wait(), 5)
    truth = frozen.faults.broker_truth()
    assert truth.orders == () and truth.executions == () and truth.positions == ()
    assert [(o.order_id, o.order_ref, o.con_ids) for o in truth.lost] == [
        (first.orderId, "lost-1", (15547841,))
    ]
    async with connected(ibm, frozen) as ib:  # the next connection works as usual
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        trade = ib.placeOrder(tlt, ibm.MarketOrder("BUY", 100, orderRef="after"))
        await eventually(lambda: trade.orderStatus.status == "Filled")
    assert [o.order_ref for o in frozen.faults.broker_truth().orders] == ["after"]


async def test_late_acknowledgements_arrive_late_while_the_order_works(frozen, ibm):
    async with connected(ibm, frozen) as ib:
        (tltw,) = await qualified(ib, ibm.Stock("TLTW", "SMART", "USD"))
        frozen.faults.delay_acks(1.0)
        trade = ib.placeOrder(tltw, ibm.MarketOrder("SELL", 100, orderRef="late"))
        await asyncio.sleep(0.5)
        assert trade.orderStatus.status == "PendingSubmit"  # nothing has come back yet
        (order,) = frozen.faults.broker_truth().orders  # but the broker filled it already
        assert (order.order_ref, order.status, order.filled) == ("late", "Filled", 100.0)
        await eventually(lambda: trade.orderStatus.status == "Filled", 3)
        assert sum(f.execution.shares for f in trade.fills) == 100
        frozen.faults.delay_acks(0)
        again = ib.placeOrder(tltw, ibm.MarketOrder("BUY", 100, orderRef="prompt"))
        await eventually(lambda: again.orderStatus.status == "Filled", 0.5)
    with pytest.raises(ValueError, match="seconds"):
        frozen.faults.delay_acks(-1)


async def test_held_fills_wait_for_release_with_the_client_gone(live, ibm):
    async with connected(ibm, live) as ib:
        (tltw,) = await qualified(ib, ibm.Stock("TLTW", "SMART", "USD"))
        live.faults.hold_fills(["TLTW"])
        trade = ib.placeOrder(tltw, ibm.MarketOrder("SELL", 100, orderRef="held"))
        await eventually(lambda: trade.orderStatus.status == "Submitted")
    await asyncio.sleep(0.2)  # market steps pass: a held order does not fill
    (order,) = live.faults.broker_truth().orders
    assert (order.status, order.filled) == ("Submitted", 0.0)
    live.faults.release_fills()  # the client is disconnected: the order still works
    await eventually(lambda: live.faults.broker_truth().orders[0].status == "Filled")
    (position,) = live.faults.broker_truth().positions
    assert (position.con_id, position.quantity) == (545186218, -100.0)
    async with connected(ibm, live) as ib:  # the client learns it from IB on reconnect
        fills = await ib.reqExecutionsAsync()
        assert sum(f.execution.shares for f in fills if f.execution.orderRef == "held") == 100


async def test_the_broker_truth_over_http(frozen_http, ibm):
    async with connected(ibm, frozen_http) as ib:
        (tlt,) = await qualified(ib, ibm.Stock("TLT", "SMART", "USD"))
        trade = ib.placeOrder(tlt, ibm.MarketOrder("BUY", 100, orderRef="http-1"))
        await eventually(lambda: trade.orderStatus.status == "Filled")
    status, truth = _http(frozen_http, "GET", "/broker")
    assert status == 200
    (order,) = truth["orders"]
    assert (order["order_ref"], order["con_ids"], order["status"]) == (
        "http-1",
        [15547841],
        "Filled",
    )
    assert [(e["order_ref"], e["con_id"], e["shares"]) for e in truth["executions"]] == [
        ("http-1", 15547841, 100.0)
    ]
    assert [(p["con_id"], p["quantity"]) for p in truth["positions"]] == [(15547841, 100.0)]
    assert truth["lost"] == []
    assert _http(frozen_http, "POST", "/faults/hold_fills", {"symbols": "TLT"})[0] == 400
    assert _http(frozen_http, "POST", "/faults/drop_on_next_place_order", {}) == (200, {"ok": True})
