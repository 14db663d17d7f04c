"""risk-management end to end: ibsim + a real redis-server + the real ib_async client.

The marks come from the real data-ingestion service running against the same gateway; the
intents are written to the intent stream as the strategy would; what IB did is read back through
a separate ib_async client (its own client id), never from the service under test.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from tests.risk.stack import (
    TLT_ID,
    TLTW_ID,
    alerts_of,
    booked_positions,
    decision_of,
    entry_intent,
    fills_of,
    holds,
    market,
    observer,
    open_at_ib,
    orders_at_ib,
    positions_of,
    risk_service,
    with_call,
)
from tests.support import async_eventually
from trading import seams
from trading.bus import (
    Command,
    IntentPurpose,
    Keys,
    OperatorCommand,
    OrderEvent,
    OrderIntent,
    PnL,
    RiskStatus,
    Severity,
    Side,
    Streams,
)
from trading.execution.book import RECONCILE_PREFIX
from trading.services.risk import POSITION_CONFIRM_S


async def test_an_approved_intent_fills_both_legs_and_the_book_is_right_to_the_cent(
    gateway, redis_url, bus
):
    async with (
        market(gateway, redis_url, bus),
        risk_service(gateway, redis_url),
        observer(gateway) as ib,
    ):
        entry = await entry_intent(bus, "e-1")
        call_id = entry.legs[0].option_con_id
        await bus.append(Streams.INTENTS, entry)
        assert (await decision_of(bus, "e-1")).approved
        expected = {TLT_ID: 100.0, call_id: -1.0, TLTW_ID: -375.0}
        await async_eventually(holds(lambda: positions_of(ib) == expected), 10, what="positions")

        async def booked():
            positions = await bus.hget_all(Keys.POSITIONS)
            return {int(k): p.quantity for k, p in positions.items() if p.quantity} == expected

        await async_eventually(booked, 10, what="positions in Redis")

        # exit the same pair: the round trip's P&L is fixed by the fills alone
        exit_ = await entry_intent(bus, "x-1", bw_side=Side.SELL, purpose=IntentPurpose.EXIT)
        exit_ = with_call(exit_, entry.legs[0])
        await bus.append(Streams.INTENTS, exit_)
        assert (await decision_of(bus, "x-1")).approved
        await async_eventually(holds(lambda: positions_of(ib) == {}), 10, what="flat at IB")

        async def settled():
            fills = await fills_of(bus)
            legs = [f for f in fills if f.sec_type != "BAG"]
            pnl = await bus.get_latest(Keys.PNL, PnL)
            return (
                len(legs) == 6
                and pnl is not None
                and pnl.ts > max(f.ts for f in fills)
                and (fills, pnl)
            )

        fills, pnl = await async_eventually(settled, 10, what="6 leg fills and a fresh P&L")
        # cash-flow P&L (independent of average cost): sells minus buys, less commissions
        legs = [f for f in fills if f.sec_type != "BAG"]
        cash = math.fsum(
            (1 if f.side is Side.SELL else -1) * f.quantity * f.price * f.multiplier for f in legs
        )
        commissions = math.fsum(f.commission for f in fills)
        assert commissions == pytest.approx(2 * (1.00 + 0.65 + 375 * 0.005), abs=1e-9)
        assert pnl.unrealized == pytest.approx(0.0, abs=1e-9)
        assert round(pnl.total, 2) == round(cash - commissions, 2)
        assert round(pnl.per_pair["p-1"], 2) == round(cash - commissions, 2)
        events = [e.message for e in await bus.read_after(Streams.ORDER_EVENTS, expect=OrderEvent)]
        assert {e.status for e in events if e.intent_id == "e-1"} >= {"Submitted", "Filled"}
        assert {t.order.orderRef for t in await orders_at_ib(ib)} >= {"e-1", "x-1"}


async def test_an_intent_over_a_limit_is_rejected_with_its_reason_and_never_sent(
    gateway, redis_url, bus
):
    async with (
        market(gateway, redis_url, bus),
        risk_service(gateway, redis_url, max_tltw_shares=100),
        observer(gateway) as ib,
    ):
        await bus.append(Streams.INTENTS, await entry_intent(bus, "big-1"))
        decision = await decision_of(bus, "big-1")
        assert not decision.approved
        assert [r.code for r in decision.reasons] == ["POSITION_LIMIT"]
        assert "545186218" in decision.reasons[0].message
        status = await bus.hget_state(Keys.INTENT_STATUS, "big-1")
        assert status["status"] == "rejected"
        assert await bus.pending_count(Streams.INTENTS, "risk") == 0
        await ib.reqAllOpenOrdersAsync()
        assert [t for t in ib.trades() if t.order.orderRef == "big-1"] == []


async def test_the_pair_stop_loss_flattens_both_legs(gateway, redis_url, bus):
    # Entering costs the spread and ~3.50 USD of commissions: a 1 USD stop fires at once.
    async with (
        market(gateway, redis_url, bus),
        risk_service(gateway, redis_url, pair_stop_loss_usd=1.0),
        observer(gateway) as ib,
    ):
        await bus.append(Streams.INTENTS, await entry_intent(bus, "e-1"))
        assert (await decision_of(bus, "e-1")).approved

        async def stopped():
            alerts = await alerts_of(bus)
            return any(a.code == "stop" for a in alerts)

        await async_eventually(stopped, 10, what="stop alert")
        await async_eventually(holds(lambda: positions_of(ib) == {}), 10, what="flat at IB")
        stop_refs = {
            t.order.orderRef for t in await orders_at_ib(ib) if t.order.orderRef.startswith("stop")
        }
        assert len(stop_refs) == 1


async def test_the_kill_switch_cancels_resting_orders_and_flattens(gateway, redis_url, bus):
    async with (
        market(gateway, redis_url, bus),
        risk_service(gateway, redis_url, price_band_bp=500.0),
        observer(gateway) as ib,
    ):
        await bus.append(Streams.INTENTS, await entry_intent(bus, "e-1"))
        assert (await decision_of(bus, "e-1")).approved
        await async_eventually(holds(lambda: len(positions_of(ib)) == 3), 10, what="entered")
        resting = await entry_intent(bus, "rest-1", tltw_offset=+0.50, pair_id="p-2")
        resting = OrderIntent(
            resting.intent_id,
            resting.pair_id,
            resting.ts,
            resting.purpose,
            resting.action,
            (resting.legs[1],),
        )
        await bus.append(Streams.INTENTS, resting)
        assert (await decision_of(bus, "rest-1")).approved

        async def working():
            return [t for t in await open_at_ib(ib) if t.order.orderRef == "rest-1"]

        await async_eventually(working, 10, what="resting order")
        kill = OperatorCommand("kill-1", 0.0, Command.KILL, "test", "kill switch", flatten=True)
        await bus.append(Streams.COMMANDS, kill)

        async def cancelled():
            return not [t for t in await open_at_ib(ib) if t.order.orderRef == "rest-1"]

        await async_eventually(cancelled, 10, what="resting order cancelled")
        await async_eventually(holds(lambda: positions_of(ib) == {}), 10, what="flat at IB")
        status = await bus.get_latest(Keys.RISK_STATUS, RiskStatus)
        assert status.state == "HALTED" and "KILL" in status.reason


async def test_a_restart_between_placing_and_acking_places_no_duplicate(gateway, redis_url, bus):
    async with market(gateway, redis_url, bus), observer(gateway) as ib:
        crashed = asyncio.Event()

        async def die() -> None:
            crashed.set()
            await asyncio.sleep(3600)  # the process "dies" here: cancelled below

        await bus.append(Streams.INTENTS, await entry_intent(bus, "e-1"))
        seams.arm("risk.order_sent", die)
        try:
            async with risk_service(gateway, redis_url):
                await asyncio.wait_for(crashed.wait(), 10)
        finally:
            seams.disarm("risk.order_sent")
        record = await bus.hget_state(Keys.INTENT_STATUS, "e-1")
        assert record["status"] == "placing"
        assert await bus.pending_count(Streams.INTENTS, "risk") == 1

        async with risk_service(gateway, redis_url):

            async def acked():
                return await bus.pending_count(Streams.INTENTS, "risk") == 0

            await async_eventually(acked, 15, what="intent acknowledged after restart")
            await async_eventually(holds(lambda: len(positions_of(ib)) == 3), 10, what="filled")
        await ib.reqCompletedOrdersAsync(False)
        refs = [t for t in ib.trades() if t.order.orderRef == "e-1" and t.order.permId]
        assert len({t.order.permId for t in refs}) == 2  # one BAG + one TLTW, never resent
        assert positions_of(ib)[TLTW_ID] == -375


async def test_an_order_rejected_by_ib_is_recorded_and_not_retried(gateway, redis_url, bus):
    async with (
        market(gateway, redis_url, bus),
        risk_service(gateway, redis_url),
        observer(gateway) as ib,
    ):
        single = await entry_intent(bus, "r-1")
        single = OrderIntent(
            single.intent_id,
            single.pair_id,
            single.ts,
            single.purpose,
            single.action,
            (single.legs[1],),
        )
        gateway.faults.reject_next_order("test rejection")
        await bus.append(Streams.INTENTS, single)
        assert (await decision_of(bus, "r-1")).approved

        async def rejected():
            events = await bus.read_after(Streams.ORDER_EVENTS, expect=OrderEvent)
            return [e.message for e in events if e.message.status == "Rejected"]

        (event,) = await async_eventually(rejected, 10, what="Rejected order event")
        assert event.intent_id == "r-1" and "201" in event.message

        async def alerted():
            # Written by risk's writer after the order event (a few round trips later).
            return [a for a in await alerts_of(bus) if a.code == "order_rejected"]

        await async_eventually(alerted, 10, what="the order_rejected alert")
        assert await bus.pending_count(Streams.INTENTS, "risk") == 0
        await asyncio.sleep(1.0)  # give a blind retry the time to show itself
        await ib.reqCompletedOrdersAsync(False)
        assert len({t.order.permId for t in ib.trades() if t.order.orderRef == "r-1"}) <= 1
        assert TLTW_ID not in positions_of(ib)


async def test_a_legging_timeout_unwinds_the_filled_leg(gateway, redis_url, bus):
    async with (
        market(gateway, redis_url, bus),
        risk_service(gateway, redis_url, price_band_bp=500.0, legging_timeout_s=1.0),
        observer(gateway) as ib,
    ):
        # the BAG is marketable, the TLTW sell rests 0.50 above the bid
        legged = await entry_intent(bus, "l-1", tltw_offset=+0.50)
        await bus.append(Streams.INTENTS, legged)
        assert (await decision_of(bus, "l-1")).approved

        async def unwound():
            alerts = [a for a in await alerts_of(bus) if a.code == "legging"]
            return alerts and positions_of(ib) == {}

        await async_eventually(unwound, 15, what="legging alert and flat book")
        assert not [t for t in await open_at_ib(ib) if t.order.orderRef == "l-1"]
        refs = {t.order.orderRef for t in await orders_at_ib(ib)}
        assert "l-1:unwind" in refs


async def test_an_assignment_is_booked_and_the_pair_brought_back_into_balance(
    gateway, redis_url, bus
):
    async with (
        market(gateway, redis_url, bus),
        risk_service(gateway, redis_url),
        observer(gateway) as ib,
    ):
        entry = await entry_intent(bus, "e-1")
        call_id = entry.legs[0].option_con_id
        await bus.append(Streams.INTENTS, entry)
        assert (await decision_of(bus, "e-1")).approved
        await async_eventually(holds(lambda: len(positions_of(ib)) == 3), 10, what="entered")
        gateway.faults.assign_early(call_id)

        async def rebalanced():
            alerts = [a for a in await alerts_of(bus) if a.code == "assignment"]
            return alerts and positions_of(ib) == {}

        await async_eventually(rebalanced, 15, what="assignment alert and a flat account")
        fills = await fills_of(bus)
        settled = [f for f in fills if not f.intent_id]
        assert {(f.con_id, f.side, f.quantity) for f in settled} == {
            (call_id, Side.BUY, 1.0),
            (TLT_ID, Side.SELL, 100.0),
        }

        async def book_flat():
            positions = await bus.hget_all(Keys.POSITIONS)
            return positions and all(p.quantity == 0 for p in positions.values())

        await async_eventually(book_flat, 10, what="the book flat in Redis")


async def enter_and_stop_risk(gateway, redis_url, bus, ib) -> tuple[dict[int, float], PnL]:
    """Enter one buy-write unit against 375 TLTW; risk is stopped once it shows the pair."""
    async with risk_service(gateway, redis_url):
        entry = await entry_intent(bus, "e-1")
        await bus.append(Streams.INTENTS, entry)
        assert (await decision_of(bus, "e-1")).approved
        expected = {TLT_ID: 100.0, entry.legs[0].option_con_id: -1.0, TLTW_ID: -375.0}
        await async_eventually(holds(lambda: positions_of(ib) == expected), 10, what="at IB")

        async def shown():
            return await booked_positions(bus) == expected

        await async_eventually(shown, 10, what="the pair in Redis")
        pnl = await bus.get_latest(Keys.PNL, PnL)
    return expected, pnl


async def test_a_restart_of_risk_mid_position_publishes_the_same_book(gateway, redis_url, bus):
    async with market(gateway, redis_url, bus), observer(gateway) as ib:
        expected, before = await enter_and_stop_risk(gateway, redis_url, bus, ib)
        restarted = time.time()
        async with risk_service(gateway, redis_url):

            async def republished():
                return await booked_positions(bus, since=restarted)

            assert await async_eventually(republished, 10, what="a fresh book") == expected
            await asyncio.sleep(POSITION_CONFIRM_S + 0.5)  # time for a (wrong) alignment to act
            assert await booked_positions(bus, since=restarted) == expected
            after = await bus.get_latest(Keys.PNL, PnL)
        assert after.ts > restarted
        assert after.commissions == pytest.approx(before.commissions, abs=1e-9)
        assert after.realized == pytest.approx(before.realized, abs=1e-9)
        fills = await fills_of(bus)
        assert not [f for f in fills if f.exec_id.startswith(RECONCILE_PREFIX)]
        assert not [a for a in await alerts_of(bus) if a.code == "position_break"]


async def test_a_book_whose_fills_are_lost_is_rebuilt_from_ibs_positions(gateway, redis_url, bus):
    async with market(gateway, redis_url, bus), observer(gateway) as ib:
        expected, _ = await enter_and_stop_risk(gateway, redis_url, bus, ib)
        # The fill history is gone (a Redis restored without it) and IB no longer reports the
        # executions (reqExecutions covers the current session only): IB's positions remain.
        await bus.redis.delete(Streams.FILLS, Keys.POSITIONS, Keys.PNL)
        gateway.call(lambda: gateway._core.broker.executions.clear())
        async with risk_service(gateway, redis_url):

            async def rebuilt():
                return await booked_positions(bus) == expected

            await async_eventually(rebuilt, 10, what="the book aligned to IB's positions")
        adjustments = [f for f in await fills_of(bus) if f.exec_id.startswith(RECONCILE_PREFIX)]
        assert {(f.con_id, f.side, f.quantity) for f in adjustments} == {
            (TLT_ID, Side.BUY, 100.0),
            (next(c for c, q in expected.items() if q == -1.0), Side.SELL, 1.0),
            (TLTW_ID, Side.SELL, 375.0),
        }
        # booked at IB's average cost (per share: IB's option avgCost is per contract)
        ib_cost = {p.contract.conId: p.avgCost for p in ib.positions()}
        for f in adjustments:
            assert f.price * f.multiplier == pytest.approx(ib_cost[f.con_id], abs=1e-9)
        (alert,) = [a for a in await alerts_of(bus) if a.code == "position_break"]
        assert alert.severity == Severity.CRITICAL
